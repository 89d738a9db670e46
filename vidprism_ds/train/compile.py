"""``train.compile``: torch.compile the temporal head as a whole, the CLIP backbone per transformer block, and
the input normalisation and loss combination around them (``step_functions``). ``"auto"`` (the default)
compiles on GPUs only; the graphs are cached on disk (``use_compile_cache``) in the run's output folder.

Why these units:

* The head (``VidPrismHead``, ``HomogeneousHead`` or ``MeanPoolHead``) is hundreds of small operators on
  short streams, so launch overhead dominates it; as one graph Inductor fuses the element-wise chains
  (sampler masks, fusion gates, losses). It compiles with zero graph breaks in every mode and variant
  (``tests/train/test_compile.py`` pins this), the routed variant's megatron-core routing maths, the
  homogeneous head's fusion and the frame-time encoding included. ``VideoClassifier`` hands the head
  ``frame_times`` by keyword, so a compiled head takes them as an eager one does (a call with times and
  one without are two graphs, each traced once).
* The backbone is the same ``ResidualAttentionBlock`` repeated: compiling each block (not the whole
  tower) gives one graph that every block reuses (same code, guards on the module only), keeps compile
  time flat in depth, and leaves open_clip's per-block gradient checkpointing (``torch.utils.checkpoint``
  around each block) working, since the checkpoint wraps a compiled callable instead of being traced.

Compilation is in place with ``nn.Module.compile()``: the module keeps its class, parameters and
state-dict keys (``torch.compile(module)`` would wrap it and prefix every key with ``_orig_mod.``), so
checkpoints, DeepSpeed's parameter groups, expert tags and ``find_expert_head`` see the same model.
It is lazy: nothing is traced until the first forward, so the first step (and the first of every new
input shape, train/eval switch or grad mode) takes longer: Inductor compiles its kernels then, and caches
them for later runs (docs/benchmarks.md, Compiled, gives the times).

Order: call after ``build_video_model`` and before ``deepspeed.initialize``. Because tracing happens at
the first forward, calling it before or after ``vidprism_ds.parallel.parallelize_model`` is the same:
the head is traced with whatever ``experts`` and ``dispatcher`` it holds then. Expert parallelism
does not need the head split around its dispatcher: ``ExpertParallelDispatcher`` is plain Python over
a fixed placement, and its exchanges are ``all_to_all_single_autograd`` from
``torch.distributed._functional_collectives`` with split sizes known from shapes, which Dynamo traces
into the head's graph, backward included. At EP=2 the routed head compiles with ``fullgraph=True`` and
matches eager (``tests/train/test_compile.py``, with AOTAutograd's eager backend to keep the test short;
docs/benchmarks.md gives Inductor's agreement).

Behaviour that differs from eager: for parameters the loss does not depend on (e.g. the projection when
the contrastive weight is 0), a compiled backward returns zero gradients where eager leaves ``None``.
DeepSpeed's ZeRO stages 1 and 2 step flat partitions and fill a missing gradient with zeros, so the
update is the same there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import torch
from torch import nn

from vidprism_ds.data.transforms import normalise
from vidprism_ds.model.backbone import transformer_blocks
from vidprism_ds.model.losses import combine_losses

# The cache locations Inductor (FX graphs, AOTAutograd, kernels) and Triton (GPU kernels) read from the
# environment each time they look something up.
CACHE_ENV_VARS = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def compile_enabled(setting: Union[bool, str], on_gpu: bool) -> bool:
    """``train.compile`` on this device: "auto" compiles on a GPU only (docs/training.md)."""
    return on_gpu if setting == "auto" else bool(setting)


def use_compile_cache(directory: Path) -> Path:
    """Point Inductor's and Triton's on-disk caches at ``directory`` (created), so that a requeued or
    resumed run finds the graphs and kernels the first one compiled. Call before the first compile."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(directory / "triton")
    return directory


@dataclass(frozen=True)
class StepFunctions:
    """What the training step calls around the model: compiled with it, or the plain functions."""

    normalise: Callable[..., torch.Tensor]  # vidprism_ds.data.transforms.normalise
    combine_losses: Callable  # vidprism_ds.model.losses.combine_losses


def step_functions(compiled: bool, **compile_kwargs) -> StepFunctions:
    """The input normalisation and the loss combination, through ``torch.compile`` when ``compiled``: each
    is a chain of elementwise ops that Inductor fuses into a few kernels."""
    if not compiled:
        return StepFunctions(normalise=normalise, combine_losses=combine_losses)
    return StepFunctions(normalise=torch.compile(normalise, **compile_kwargs),
                         combine_losses=torch.compile(combine_losses, **compile_kwargs))


def compile_model(model: nn.Module, **compile_kwargs) -> None:
    """In place: ``model.head.compile()`` and ``block.compile()`` for every backbone block.

    ``model`` is a ``VideoClassifier`` (``.backbone`` a ``FrameEncoder``, ``.head`` any temporal head).
    ``compile_kwargs`` go to ``torch.compile`` (``mode``, ``backend``, ``dynamic`` ...); the defaults are
    Inductor with default mode.
    """
    model.head.compile(**compile_kwargs)
    for block in transformer_blocks(model.backbone):
        block.module.compile(**compile_kwargs)
