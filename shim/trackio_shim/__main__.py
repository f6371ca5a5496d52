"""``python -m trackio_shim script.py``: run a program with ``import wandb`` meaning trackio_shim (switch/launch.py)."""

import sys

from trackio_shim.switch.launch import main

sys.exit(main())
