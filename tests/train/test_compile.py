"""train.compile: every temporal head is one torch.compile graph, a backbone block is one graph, and the
compiled model computes what the eager one does (single process and at expert-parallel size 2)."""

import copy

import pytest
import torch
import torch._dynamo

from vidprism_ds.config.schema import BackboneConfig, HeadConfig, LossWeights, ModelConfig
from vidprism_ds.model.backbone import build_clip, transformer_blocks
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.model.homogeneous_head import HomogeneousHead
from vidprism_ds.model.losses import combine_losses
from vidprism_ds.model.video_model import MeanPoolHead, build_video_model
from vidprism_ds.train.compile import compile_model

DIM, CLASSES, FRAMES, BATCH, IMAGE = 32, 5, 8, 2, 32
ROUTED = dict(experts_per_rate=2, router_topk=1)

HEADS = {
    "default": lambda: VidPrismHead(DIM, CLASSES, HeadConfig(), max_frames=FRAMES),
    "official": lambda: VidPrismHead(DIM, CLASSES, HeadConfig(mode="official"), max_frames=FRAMES),
    "routed": lambda: VidPrismHead(DIM, CLASSES, HeadConfig(**ROUTED), max_frames=FRAMES),
    # capacity 1 < B: megatron's capacity dropping runs too
    "routed_capacity": lambda: VidPrismHead(DIM, CLASSES, HeadConfig(**ROUTED, router_capacity_factor=1.0),
                                            max_frames=FRAMES),
    "homogeneous": lambda: HomogeneousHead(DIM, CLASSES, HeadConfig(), max_frames=FRAMES),
    "homogeneous_official": lambda: HomogeneousHead(DIM, CLASSES, HeadConfig(mode="official"), max_frames=FRAMES),
    "homogeneous_fusion": lambda: HomogeneousHead(DIM, CLASSES, HeadConfig(homogeneous_fusion=True), max_frames=FRAMES),
    "meanpool": lambda: MeanPoolHead(DIM, CLASSES),
}


def _explain(module, *args, **kwargs):
    torch._dynamo.reset()  # explain counts what it traces; a cached graph would hide a break
    return torch._dynamo.explain(module)(*args, **kwargs)


def _break_reasons(explanation) -> str:
    return "\n".join(f"{b.reason.splitlines()[0]} at {b.user_stack[-1].filename}:{b.user_stack[-1].lineno}"
                     for b in explanation.break_reasons)


@pytest.mark.parametrize("variant", list(HEADS))
def test_head_compiles_as_one_graph(variant):
    torch.manual_seed(0)
    head = HEADS[variant]().train()
    explanation = _explain(head, torch.randn(BATCH, FRAMES, DIM))
    assert explanation.graph_break_count == 0, _break_reasons(explanation)
    assert explanation.graph_count == 1


@pytest.mark.parametrize("training", [True, False])
def test_backbone_block_compiles_as_one_graph(training):
    # eval under no_grad is the frozen backbone (model.backbone.freeze=all): nn.MultiheadAttention's fast path
    visual = build_clip(BackboneConfig(image_size=IMAGE)).visual.train(training)
    block = visual.transformer.resblocks[0]
    tokens_nld = torch.randn(BATCH * FRAMES, (IMAGE // 16) ** 2 + 1, visual.transformer.width)
    with torch.set_grad_enabled(training):
        explanation = _explain(block, tokens_nld)
    assert explanation.graph_break_count == 0, _break_reasons(explanation)
    assert explanation.graph_count == 1


def test_compile_model_is_in_place_and_keeps_state_dict_keys():
    model = build_video_model(ModelConfig(backbone=BackboneConfig(image_size=IMAGE)), CLASSES, FRAMES).model
    keys = list(model.state_dict())
    head = model.head
    compile_model(model)
    assert model.head is head and list(model.state_dict()) == keys
    # nn.Module.compile() is lazy: it only installs the compiled call (nothing is traced here)
    for module in [model.head, *(block.module for block in transformer_blocks(model.backbone))]:
        assert module._compiled_call_impl is not None
    assert model.backbone._compiled_call_impl is None  # the tower itself stays eager around the blocks


def _assert_same_training_step(compiled, eager, clips, labels, text):
    outputs = []
    for model in (compiled, eager):
        output = model(clips)
        losses = combine_losses(LossWeights(), output, labels, text)
        losses.total.backward()
        outputs.append((output, losses))
    (out, losses), (ref_out, ref_losses) = outputs
    torch.testing.assert_close(out.logits, ref_out.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.expert_weights, ref_out.expert_weights, atol=1e-6, rtol=1e-5)
    for name, value in ref_losses.terms.items():
        torch.testing.assert_close(losses.terms[name], value, atol=1e-6, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    torch.testing.assert_close(losses.total, ref_losses.total, atol=1e-6, rtol=1e-5)
    for (name, p), q in zip(compiled.named_parameters(), eager.parameters()):
        # a compiled backward gives zeros where eager leaves None (parameters the loss does not reach)
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        ref = q.grad if q.grad is not None else torch.zeros_like(q)
        torch.testing.assert_close(grad, ref, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.slow
def test_compiled_model_matches_eager():
    """fwd+bwd of the whole tiny model (VidPrism head, 2-block backbone with per-block gradient
    checkpointing around the compiled blocks), traced by Dynamo and AOTAutograd as train.compile does.
    aot_eager skips Inductor's code generation: on 2 CPU cores with a cold cache each of its ~100 C++
    kernels is a separate compile (about 4 minutes here); Inductor itself runs on the GPU in
    bench/gpu_check.py's train_compiled section (docs/benchmarks.md)."""
    cfg = ModelConfig(backbone=BackboneConfig(image_size=IMAGE, grad_checkpointing=True))
    eager = build_video_model(cfg, CLASSES, FRAMES).model.train()
    compiled = copy.deepcopy(eager)
    compile_model(compiled, backend="aot_eager")
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(BATCH, FRAMES, 3, IMAGE, IMAGE, generator=g)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    text_cd = torch.randn(CLASSES, eager.backbone.embed_dim, generator=g)
    _assert_same_training_step(compiled, eager, clips, labels, text_cd)


def ep2_compiled_head_matches_eager():
    """Worker (every rank of tests.parallel.harness.run_workers): the routed head with its 8 experts on 2 EP
    ranks, compiled whole with fullgraph=True (any graph break raises), against the same sharded head eager.

    aot_eager traces forward and backward (the all_to_alls' autograd included) like Inductor does but
    skips code generation, which at this size costs several minutes per CPU rank."""
    import torch.distributed as dist

    from vidprism_ds.parallel import init_expert_parallel, parallelize_model

    ctx = init_expert_parallel(2)
    torch.manual_seed(0)
    eager = HEADS["routed"]().train()
    compiled = copy.deepcopy(eager)
    for head in (eager, compiled):
        parallelize_model(head, ctx)
    compiled.compile(fullgraph=True, backend="aot_eager")
    g = torch.Generator().manual_seed(dist.get_rank())
    x_btd = torch.randn(BATCH, FRAMES, DIM, generator=g)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    diffs = {}
    for name, head in (("compiled", compiled), ("eager", eager)):
        out = head(x_btd)
        combine_losses(LossWeights(contrastive=0.0), out, labels).total.backward()
        diffs[name] = out
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)) - (q.grad if q.grad is not None else 0)
             for p, q in zip(compiled.parameters(), eager.parameters())]
    return {"logits": (diffs["compiled"].logits - diffs["eager"].logits).abs().max().item(),
            "router_aux": (diffs["compiled"].router_aux_loss - diffs["eager"].router_aux_loss).abs().item(),
            "grad": max(d.abs().max().item() for d in grads),
            "local_experts": compiled.experts.global_ids}


@pytest.mark.slow
def test_compiled_head_with_expert_parallel_all_to_all():
    from tests.parallel.harness import run_workers

    reports = run_workers("tests.train.test_compile:ep2_compiled_head_matches_eager", 2)
    assert sorted(e for r in reports for e in r["local_experts"]) == list(range(8))
    for report in reports:
        assert report["logits"] < 1e-5 and report["router_aux"] < 1e-6 and report["grad"] < 1e-5, report



def _timed_head():
    torch.manual_seed(0)
    head = VidPrismHead(DIM, CLASSES, HeadConfig(frame_time_encoding=True), max_frames=FRAMES).train()
    with torch.no_grad():  # a trained projection, so that the times change the result
        torch.nn.init.normal_(head.frame_time_encoding.weight, std=0.1)
    times_bt = torch.rand(BATCH, FRAMES).sort(dim=1).values * 10
    return head, torch.randn(BATCH, FRAMES, DIM), times_bt


def test_head_with_frame_times_compiles_as_one_graph():
    """The frame_times keyword reaches the compiled head: train.compile compiles the head alone, and
    VideoClassifier passes the times to it by keyword."""
    head, x_btd, times_bt = _timed_head()
    explanation = _explain(head, x_btd, frame_times=times_bt)
    assert explanation.graph_break_count == 0, _break_reasons(explanation)
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compiled_head_with_frame_times_matches_eager():
    eager, x_btd, times_bt = _timed_head()
    compiled = copy.deepcopy(eager)
    compiled.compile(backend="aot_eager", fullgraph=True)
    out, ref = compiled(x_btd, frame_times=times_bt), eager(x_btd, frame_times=times_bt)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    out.logits.sum().backward()
    ref.logits.sum().backward()
    torch.testing.assert_close(compiled.frame_time_encoding.weight.grad, eager.frame_time_encoding.weight.grad,
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("setting, on_gpu, compiled", [
    ("auto", True, True), ("auto", False, False), (True, False, True), (False, True, False)])
def test_auto_compiles_on_gpus_only(setting, on_gpu, compiled):
    from vidprism_ds.train.compile import compile_enabled

    assert compile_enabled(setting, on_gpu) is compiled


def test_the_compile_cache_goes_where_the_run_says(tmp_path, monkeypatch):
    from vidprism_ds.train.compile import CACHE_ENV_VARS, use_compile_cache

    for name in CACHE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert use_compile_cache(tmp_path / "cache") == tmp_path / "cache" and (tmp_path / "cache").is_dir()
    import os
    assert all(os.environ[name].startswith(str(tmp_path / "cache")) for name in CACHE_ENV_VARS)


@pytest.mark.slow
def test_training_steps_never_recompile():
    """The compiled model, normalisation and loss combination over steps of the same shapes: any recompile
    raises (``error_on_recompile``). Each compiled unit is traced once, at the first step."""
    from vidprism_ds.train.compile import step_functions

    torch._dynamo.reset()
    model = build_video_model(ModelConfig(backbone=BackboneConfig(image_size=IMAGE)), CLASSES, FRAMES).model.train()
    compile_model(model, backend="aot_eager")
    fns = step_functions(True, backend="aot_eager")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            clips_u8 = torch.randint(0, 256, (BATCH, FRAMES, 3, IMAGE, IMAGE), generator=g, dtype=torch.uint8)
            labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
            losses = fns.combine_losses(LossWeights(contrastive=0.0), model(fns.normalise(clips_u8)), labels)
            losses.total.backward()
            optimizer.step()
            optimizer.zero_grad()
    assert torch.isfinite(losses.total)
    # the step functions really went through Dynamo (a plain function has no compiled wrapper)
    assert all(hasattr(fn, "_torchdynamo_orig_callable") for fn in (fns.normalise, fns.combine_losses))


def test_the_first_compiled_step_reports_its_time(capsys):
    from types import SimpleNamespace

    from vidprism_ds.train.trainer import Trainer

    trainer = Trainer.__new__(Trainer)  # the step alone: no model, engine or process group
    trainer.rank, trainer.compile_cache, trainer.compile_reported = 0, "CACHE", False
    trainer.engine = SimpleNamespace(backward=lambda loss: None, step=lambda: None)
    trainer._forward_loss = lambda batch: (None, SimpleNamespace(total=None))
    for _ in range(3):
        trainer.train_step({})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train.compile")]
    assert len(lines) == 1 and lines[0].startswith("train.compile: first step ") and "cached in CACHE" in lines[0]
