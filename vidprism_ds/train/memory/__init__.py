"""Peak GPU memory per rank, estimated before training, and the check that refuses what cannot fit.

A run that does not fit dies with an out-of-memory error minutes into its first step (after the data
pipeline, the model and DeepSpeed have started), or worse, on the first long clip of a later epoch.
This package predicts the peak from the model itself and names the knob to turn instead.

The peak of a training step is at the start of the backward pass: every tensor autograd saved in the
forward pass is alive, next to the weights, the gradients accumulated so far and the optimizer state:

    peak = parameters + gradients + optimizer state + activations + workspace

* ``activations``: the activations, *measured* on the actual model (the storages autograd keeps for
  backward), with what gradient checkpointing and tensor parallelism change.
* ``parameters``: the parameter elements on a rank (its experts, its tensor-parallel shards); their bytes
  follow from the DeepSpeed config as ``vidprism_ds.train.ds_config.DeepSpeedSettings`` reads it.
* ``estimate``: ``MemoryEstimate`` and ``estimate_peak_memory``, which counts parameters, gradients and
  optimizer state per ZeRO stage.
* ``checkpointing``: ``model.backbone.grad_checkpointing: auto``, the fastest checkpointing that fits.
* ``fit``: ``check_fits`` and its remedies; ``report_and_check``, which the trainer calls at start-up
  (it resolves ``auto`` first).
* ``for_config``: ``estimate_for_config``, the estimate for a config without its weights.
* ``__main__``: ``python -m vidprism_ds.train.memory --config configs/k400_vitb16.yaml --world-size 8``
  prints the estimate for a preset on a machine without a GPU.
"""

from vidprism_ds.train.memory.estimate import MemoryEstimate, estimate_peak_memory
from vidprism_ds.train.memory.fit import check_fits, report_and_check
from vidprism_ds.train.memory.for_config import estimate_for_config

__all__ = ["MemoryEstimate", "check_fits", "estimate_for_config", "estimate_peak_memory", "report_and_check"]
