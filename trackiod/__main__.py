"""``python -m trackiod``: the same entry point as the ``trackiod`` console script."""

from trackiod.cli import main

raise SystemExit(main())
