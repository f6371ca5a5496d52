"""Framework integrations: accelerate, transformers, PyTorch Lightning, and an adapter for other trainers.

Import the module you need (``trackio_shim.integrations.accelerate`` and so on); each imports its framework
only then, so ``import trackio_shim`` stays light. docs/integrations.md shows each in use.
"""
