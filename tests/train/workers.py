"""Multi-process bodies for the trainer tests (run by tests.parallel.harness.run_workers)."""

from vidprism_ds.config import load_config
from vidprism_ds.train.ds_config import read_ds_config
from vidprism_ds.train.run import run_experiment


def train_and_report(overrides: list[str], ds_config_path: str, ds_overrides: dict | None = None):
    cfg = load_config(None, overrides)
    ds = read_ds_config(ds_config_path)
    for key, value in (ds_overrides or {}).items():
        ds[key] = value
    result = run_experiment(cfg, ds)
    return {"losses": [h["total"] for h in result.history], "steps": [h["step"] for h in result.history],
            "eval": result.eval_metrics}


class _Prefetched:
    def __init__(self, loader):
        self.batches = list(loader)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    def set_epoch(self, epoch, start_batch=0):
        assert start_batch == 0, "prefetched batches cannot start part-way"


def count_host_syncs(overrides: list[str], ds_config_path: str) -> dict:
    """Train under a HostSyncCounter; DeepSpeed's backward and step are counted apart (inner counters)."""
    from vidprism_ds.train.trainer import Trainer
    from vidprism_ds.utils.op_count import HostSyncCounter

    trainer = Trainer(load_config(None, overrides), read_ds_config(ds_config_path))
    # the batches are read before counting: a loader in this (daemonic) process has no workers, and its
    # decoding would be counted as the training step's
    trainer.train_loader = _Prefetched(trainer.train_loader)
    engine = trainer.engine
    deepspeed_counts, checkpoint_counts = [], []
    backward, step, save = engine.backward, engine.step, trainer.checkpoints.save

    def counted(fn, into):
        def wrapper(*args, **kwargs):
            with HostSyncCounter() as inner:
                value = fn(*args, **kwargs)
            into.append(inner.total)
            return value
        return wrapper

    engine.backward, engine.step = counted(backward, deepspeed_counts), counted(step, deepspeed_counts)
    trainer.checkpoints.save = counted(save, checkpoint_counts)  # saving is not a per-step cost
    with HostSyncCounter() as everything:
        result = trainer.fit()
    trainer.reporter.finish()
    return {"steps": len(result.history), "all": everything.summary(), "deepspeed": sum(deepspeed_counts),
            "checkpoints": len(checkpoint_counts),
            "ours": everything.total - sum(deepspeed_counts) - sum(checkpoint_counts)}


class GlobalBatchSlices:
    """A stand-in training loader of random clips (no decode cost) whose global batches do not depend on the
    world size, as the real loader's do not. Global batch ``i`` of an epoch is drawn from a generator seeded
    with (epoch, i) and cut into micro-batches; rank ``r`` of ``w`` with accumulation ``a`` trains
    micro-batch ``(a - 1 - k) * w + r`` as its ``k``-th (any assignment gives the same step: its logged
    loss is the global batch's mean). ``set_epoch(e, start_batch)`` starts at a whole step, as the real
    loader does on a resume."""

    def __init__(self, batches_per_rank: int, micro_batch: int, grad_accum: int, rank: int, world_size: int,
                 frames: int, image_size: int, num_classes: int):
        self.batches_per_rank, self.micro_batch, self.grad_accum = batches_per_rank, micro_batch, grad_accum
        self.rank, self.world_size = rank, world_size
        self.shape = (frames, 3, image_size, image_size)
        self.num_classes = num_classes
        self.epoch, self.start_batch = 0, 0
        self.served = 0  # micro-batches handed out, over all epochs

    def __len__(self):
        return self.batches_per_rank

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        import torch

        global_batch = self.micro_batch * self.grad_accum * self.world_size
        # a resume starts at a whole step (the trainer's start_batch is a multiple of grad_accum)
        for step in range(self.start_batch // self.grad_accum, self.batches_per_rank // self.grad_accum):
            generator = torch.Generator().manual_seed(1000 * self.epoch + step)
            frames = torch.randint(0, 256, (global_batch, *self.shape), dtype=torch.uint8, generator=generator)
            labels = torch.randint(0, self.num_classes, (global_batch,), generator=generator)
            for k in range(self.grad_accum):
                first = ((self.grad_accum - 1 - k) * self.world_size + self.rank) * self.micro_batch
                self.served += 1
                yield {"frames": frames[first:first + self.micro_batch], "labels": labels[first:first + self.micro_batch]}


def train_on_world_independent_batches(overrides: list[str], ds_config_path: str) -> dict:
    """The Trainer as configured, its epoch plan from the real loader, then trained on ``GlobalBatchSlices``
    of the same length; what it printed is returned too."""
    import contextlib
    import io

    from vidprism_ds.train.trainer import Trainer

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        trainer = Trainer(load_config(None, overrides), read_ds_config(ds_config_path))
        plan, cfg = trainer.batch, trainer.cfg
        real = {"batches_per_rank": len(trainer.train_loader), "steps_per_epoch": trainer.steps_per_epoch,
                "total_steps": trainer.total_steps, "grad_accum": plan.grad_accum, "global_batch": plan.global_batch}
        trainer.train_loader = GlobalBatchSlices(len(trainer.train_loader), plan.micro_batch, plan.grad_accum,
                                                 trainer.rank, plan.dp_size, cfg.data.num_frames,
                                                 cfg.data.image_size, trainer.num_classes)
        result = trainer.fit()
    trainer.reporter.finish()
    return {**real, "losses": [h["total"] for h in result.history], "steps": [h["step"] for h in result.history],
            "lrs": [h["lr"] for h in result.history], "resumed_from": result.resumed_from,
            "clips_served": trainer.train_loader.served * plan.micro_batch, "printed": printed.getvalue()}


def collectives_on_device() -> dict:
    """Evaluation, the stop agreement and an expert-parallel forward with every collective recorded,
    while tensors made without an explicit device land on "meta" (so the trainer's device, the CPU
    here, is not where a forgotten ``device=`` puts them: the GPU bug this catches)."""
    import torch
    import torch.distributed as dist

    from vidprism_ds.config.schema import ModelConfig
    from vidprism_ds.model.video_model import build_video_model
    from vidprism_ds.parallel import expert_parallel_dispatch as dispatcher
    from vidprism_ds.parallel import init_expert_parallel, parallelize_model
    from vidprism_ds.train.evaluate import EvalAccumulator, evaluate
    from vidprism_ds.train.signals import StopRequest

    device = torch.device("cpu")
    seen = []

    def recording(name, fn):
        def wrapper(tensor, *args, **kwargs):
            seen.append((name, str(tensor.device)))
            return fn(tensor, *args, **kwargs)
        return wrapper

    dist.all_reduce = recording("all_reduce", dist.all_reduce)
    dist.broadcast = recording("broadcast", dist.broadcast)
    dispatcher.all_to_all_single_autograd = recording("all_to_all_single", dispatcher.all_to_all_single_autograd)

    model_cfg = ModelConfig()
    model_cfg.backbone.image_size = 32
    model = build_video_model(model_cfg, num_classes=4, num_frames=8, seed=0).model
    parallelize_model(model, init_expert_parallel(2))
    generator = torch.Generator().manual_seed(dist.get_rank())
    batches = [{"frames": torch.randint(0, 256, (2, 2, 8, 3, 32, 32), dtype=torch.uint8, generator=generator),
                "labels": torch.tensor([1, 3]), "valid": torch.tensor([True, False])} for _ in range(2)]
    stop = StopRequest()
    with torch.device("meta"):
        result = evaluate(model, batches, num_classes=4, device=device, dtype=torch.float32, dp_size=2)
        accumulator = EvalAccumulator(4, device)
        accumulator.reduce(dp_size=2)
        agreed = stop.agreed(2, device)
    stop.restore()
    return {"seen": seen, "samples": result.samples, "agreed": agreed}


def train_bf16_and_report(overrides: list[str], ds_config_path: str) -> dict:
    """One run of the bf16 path: losses per step, eval, the weights' dtype under DeepSpeed, the export."""
    import torch
    import torch.distributed as dist

    cfg = load_config(None, overrides)
    result = run_experiment(cfg, read_ds_config(ds_config_path))
    export = result.output_dir / cfg.train.export_on_finish
    # rank 0 writes the export; the others may return before it has finished
    state = torch.load(export, weights_only=True) if dist.get_rank() == 0 and export.is_file() else {}
    dtypes = sorted({str(v.dtype) for v in state.values()})
    return {"losses": [h["total"] for h in result.history], "steps": [h["step"] for h in result.history],
            "terms": result.history[-1] if result.history else None, "eval": result.eval_metrics,
            "resumed_from": result.resumed_from, "export_dtypes": dtypes, "export_keys": len(state)}


def resave_same_step_killed(root: str) -> dict:
    """keep_checkpoints=1: save step 3, then save step 3 again (the epoch-end save) and die inside
    DeepSpeed's save. The complete tag must survive and stay loadable."""
    from pathlib import Path

    import torch

    from vidprism_ds.parallel import init_expert_parallel
    from vidprism_ds.train.checkpoint import CheckpointManager, choose_resume_tag

    class Engine:
        module = torch.nn.Linear(2, 2)

        def save_checkpoint(self, save_dir, tag, client_state, save_latest):
            (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
            torch.save(self.module.state_dict(), Path(save_dir) / tag / "mp_rank_00_model_states.pt")

    class Killed(Engine):
        def save_checkpoint(self, *args, **kwargs):
            raise KeyboardInterrupt("killed while saving")

    manager = CheckpointManager(root, init_expert_parallel(1), keep=1, config={})
    manager.save(Engine(), step=3, epoch=0, batches_in_epoch=3)
    try:
        manager.save(Killed(), step=3, epoch=0, batches_in_epoch=5)
    except KeyboardInterrupt:
        pass
    meta = choose_resume_tag(manager.root, print)
    return {"tags_after_kill": sorted(p.name for p in manager.root.iterdir() if p.name.startswith("step_")),
            "verified_step": meta.step if meta else None, "batches_in_epoch": meta.batches_in_epoch if meta else None}


def train_recording_batches(overrides: list[str], ds_config_path: str) -> dict:
    """The Trainer on the real shard loader, recording the manifest indices of every micro-batch it trains
    (in order) and of every sample the loader opened in this process (with data.num_workers=0, all of
    them: ``ShardReader.sample`` is where a sample is first read)."""
    from vidprism_ds.data.train_source import ShardReader
    from vidprism_ds.train.trainer import Trainer

    opened = []
    open_sample = ShardReader.sample

    def recording_sample(self, index):
        opened.append(index)
        return open_sample(self, index)

    ShardReader.sample = recording_sample
    try:
        trainer = Trainer(load_config(None, overrides), read_ds_config(ds_config_path))
        trained, train_step = [], trainer.train_step

        def recording_step(batch):
            trained.append(batch["host"]["index"].tolist())
            return train_step(batch)

        trainer.train_step = recording_step
        result = trainer.fit()
        trainer.reporter.finish()
    finally:
        ShardReader.sample = open_sample
    return {"losses": [h["total"] for h in result.history], "steps": [h["step"] for h in result.history],
            "micro_batches": trained, "opened": opened, "grad_accum": trainer.batch.grad_accum,
            "resumed_from": result.resumed_from, "damaged": [h.get("damaged_samples") for h in result.history]}
