"""The check (vidprism_ds.train.memory.fit): the limit, the remedies it names, report_and_check."""

import pytest
import torch

from tests.train.memory.common import dims, resolved_ds, tiny_cfg, tiny_model
from vidprism_ds.config.schema import ConfigError
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train.memory.estimate import GIB, MemoryEstimate
from vidprism_ds.train.memory.fit import check_fits, report_and_check


def _estimate(**fields):
    base = dict(parameter_bytes=GIB, gradient_bytes=GIB, optimizer_bytes=2 * GIB, activation_bytes=76 * GIB,
                workspace_bytes=2 * GIB, parameters_on_rank=10 ** 8, activation_bytes_per_frame=76 * GIB / 1024,
                micro_batch=32, grad_accum=1, num_frames=32, checkpointing="none", dtype_name="bfloat16",
                zero_stage=2, offload_optimizer=False, dims=ParallelDims(2))
    return MemoryEstimate(**{**base, **fields})


def test_check_fits_names_gradient_checkpointing_when_it_is_off():
    over = r"82\.00 GiB .* 76\.00 GiB.*model\.backbone\.grad_checkpointing=full"
    with pytest.raises(ConfigError, match=over) as err:
        check_fits(_estimate(), 80 * GIB, 0.95)
    message = str(err.value)
    assert "\n" not in message
    # a micro-batch that fits and keeps micro_batch x grad_accum = 32
    assert "train.micro_batch=16 train.grad_accum=2" in message
    assert "zero2_offload" not in message  # 2 GiB of optimizer state cannot close a 6 GiB gap


def test_with_a_global_batch_the_remedy_names_the_micro_batch_only():
    with pytest.raises(ConfigError) as err:
        check_fits(_estimate(grad_accum=2, global_batch_fixed=True), 80 * GIB, 0.95)
    # 64 clips a rank a step whatever the micro-batch: the accumulation follows from train.global_batch
    assert "train.micro_batch=16; train.grad_accum follows from train.global_batch" in str(err.value)
    assert "raise train.grad_accum" not in str(err.value)


def test_check_fits_with_checkpointing_on_points_elsewhere():
    with pytest.raises(ConfigError) as err:
        check_fits(_estimate(checkpointing="full", activation_bytes=70 * GIB, optimizer_bytes=8 * GIB),
                   80 * GIB, 0.95)
    assert "grad_checkpointing" not in str(err.value)
    assert "ds_configs/zero2_offload.json" in str(err.value)  # 8 GiB of optimizer state would close the gap


def test_check_fits_says_what_is_left_when_no_knob_helps():
    with pytest.raises(ConfigError, match=r"data\.num_frames"):
        check_fits(_estimate(checkpointing="full", micro_batch=1, activation_bytes=90 * GIB,
                             activation_bytes_per_frame=90 * GIB / 32), 80 * GIB, 0.95)


def test_check_fits_passes_under_the_limit_and_is_off_at_fraction_zero():
    check_fits(_estimate(activation_bytes=10 * GIB), 80 * GIB, 0.95)
    check_fits(_estimate(), 80 * GIB, 0.0)
    with pytest.raises(ConfigError):
        check_fits(_estimate(activation_bytes=10 * GIB), 16 * GIB, 0.95)


def test_report_and_check_on_cpu_estimates_and_logs_without_a_limit():
    cfg = tiny_cfg("train.micro_batch=4000")  # far too much for any GPU; on a CPU there is nothing to compare
    model = tiny_model(cfg)
    lines = []
    est = report_and_check(model, cfg, resolved_ds("zero2.json", cfg, 1, on_gpu=False), dims(cfg, 1), "cpu", torch.float32,
                           log=lines.append)
    assert est.activation_bytes == int(est.activation_bytes_per_frame * 4000 * 8 + est.activation_bytes_per_step)
    assert est.activation_bytes_per_step > 0  # the head's stacked expert weights, once a step
    # on a CPU the GPU figures do not apply: one line saying so, not the estimate's block
    # and that auto (the default) chose no recompute, a CPU run having no device memory to fit
    assert lines == ["memory: the peak GPU memory estimate does not apply to a CPU run (python -m "
                     "vidprism_ds.train.memory estimates a GPU run); model.backbone.grad_checkpointing=auto: none on a CPU"]
    assert "activations" in est.format() and "gradient checkpointing none" in est.format()
    assert model.backbone.checkpointed_blocks == 0
