"""Training: the run's entry point (``cli``), the ``Trainer`` and what it drives (DeepSpeed engine and
config, batches, checkpoints, evaluation, the memory estimate, reporting). The top layer: it may import
every other subpackage, and none imports it (docs/layout.md)."""
