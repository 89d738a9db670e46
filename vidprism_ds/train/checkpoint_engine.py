"""DeepSpeed's checkpoint engine with loads that never run code from the file.

DeepSpeed's ``TorchCheckpointEngine.load`` calls ``torch.load(..., weights_only=False)``: a crafted
``.pt`` placed in a checkpoint tag runs its pickle's code on resume, ``--eval-only`` or ``--export``.
``SafeCheckpointEngine`` loads with ``weights_only=True`` and allows exactly the DeepSpeed classes its
own checkpoint files hold (found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on
ZeRO-1/2, fp32 and bf16, EP 1 and 2 checkpoints): the ZeRO stage enum, the tensor-fragment address and
the loss scaler. These are data classes rebuilt field by field; nothing of theirs executes. A file that
needs anything else is refused with ``UnsafeCheckpointError`` naming the file and the global.
Saving is DeepSpeed's, except that a full disk is reported as such (``OutOfSpaceError``).
"""

from __future__ import annotations

import pickle

import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

from vidprism_ds.utils.files import translate_out_of_space


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file needs more than tensors and DeepSpeed's data classes to load."""


def deepspeed_checkpoint_globals() -> list:
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, fragment_address, LossScaler]


def safe_torch_load(path, map_location=None):
    """``torch.load`` with ``weights_only=True`` and DeepSpeed's checkpoint classes allowed."""
    try:
        with torch.serialization.safe_globals(deepspeed_checkpoint_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(f"{path}: refused to load: it holds more than tensors and DeepSpeed's "
                                    f"checkpoint data, and loading it could run code ({str(error).splitlines()[0]})"
                                    ) from None


class SafeCheckpointEngine(TorchCheckpointEngine):
    def load(self, path: str, map_location=None):
        return safe_torch_load(path, map_location=map_location)

    def save(self, state_dict, path: str):
        with translate_out_of_space(path):
            super().save(state_dict, path)


def install(engine) -> None:
    """Replace a DeepSpeed engine's checkpoint engine (every load path of the engine goes through it)."""
    config = getattr(engine, "_config", None)
    engine.checkpoint_engine = SafeCheckpointEngine(config)
