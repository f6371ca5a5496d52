"""trackiod: the sidecar daemon of trackio_shim (ingest, store, CLI). See README.md and docs/."""

__version__ = "0.1.0"
