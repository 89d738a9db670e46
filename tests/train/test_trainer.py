"""Trainer pieces that run without a process group (the multi-process runs: test_distributed_training.py)."""

from types import SimpleNamespace

import pytest
import torch

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError
from vidprism_ds.train.device_batches import batch_to_device
from vidprism_ds.train.loader_pace import LoaderPace
from vidprism_ds.train.loop_state import EpochDamage
from vidprism_ds.train.startup_checks import unused_ep_size_warning


def test_expert_parallelism_asked_of_a_model_without_experts_is_named():
    line = unused_ep_size_warning(2, has_experts=False, variant="meanpool")
    assert line == ("warning: parallel.ep_size=2 has no effect: model.variant=meanpool has no experts (every "
                    "process holds the whole model)")
    assert unused_ep_size_warning(2, has_experts=True, variant="vidprism") is None
    assert unused_ep_size_warning(1, has_experts=False, variant="meanpool") is None


def test_a_global_batch_this_world_cannot_make_fails_before_the_model_is_built(tmp_path, monkeypatch):
    """The trainer checks the batch arithmetic right after it knows the world size (here: a plain process,
    a world of one), before building anything."""
    import vidprism_ds.train.trainer as trainer_module

    def never(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(trainer_module, "build_experiment_model", never)
    monkeypatch.setattr(trainer_module, "check_inputs", lambda *args: None)  # no shards needed here
    monkeypatch.setattr(trainer_module, "init_distributed", lambda: (0, 1, __import__("torch").device("cpu")))
    cfg = load_config(None, ["train.global_batch=24", "train.micro_batch=16", f"train.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"^train\.global_batch: 24 is not a multiple of train\.micro_batch x "
                                          r"world size \(16 x 1 = 16\)"):
        trainer_module.Trainer(cfg, {})
    with pytest.raises(ConfigError, match=r"^train\.lr_base_batch"):  # refused when the config loads
        load_config(None, ["train.lr_scaling=linear", f"train.output_dir={tmp_path}"])


def test_shards_smaller_than_one_global_batch_are_refused_instead_of_training_zero_steps(monkeypatch):
    import vidprism_ds.train.trainer as trainer_module
    from vidprism_ds.parallel.dims import ParallelDims
    from vidprism_ds.train.batch import plan_batch

    cfg = load_config(None, ["train.global_batch=32", "train.micro_batch=16"])
    trainer = object.__new__(trainer_module.Trainer)  # only the loader step: no model, no process group
    trainer.cfg, trainer.rank, trainer.world_size, trainer.on_gpu, trainer.num_classes = cfg, 0, 1, False, 4
    trainer.dims = ParallelDims(1)
    trainer.batch, trainer.lr_scale = plan_batch(cfg.train, trainer.dims), 1.0
    monkeypatch.setattr(trainer_module, "build_train_loader", lambda *args, **kwargs: _CountingLoader(1))
    with pytest.raises(ConfigError, match=r"^train\.global_batch: .* 1 micro-batch\(es\) of 16 clips, fewer "
                                          r"than the 2 one optimizer step of 32 clips accumulates"):
        trainer._build_train_loader()
    monkeypatch.setattr(trainer_module, "build_train_loader", lambda *args, **kwargs: _CountingLoader(2))
    trainer._build_train_loader()
    assert trainer.steps_per_epoch == 1


class _CountingLoader:
    def __init__(self, batches):
        self.batches, self.pulled = batches, 0

    def __len__(self):
        return self.batches

    def set_epoch(self, epoch, start_batch=0):
        assert start_batch == 0

    def __iter__(self):
        for _ in range(self.batches):
            self.pulled += 1
            yield {"labels": torch.zeros(2)}


class _Engine:
    def train(self):
        pass


def _host_only(batch):
    """Stands for Trainer.to_device in the loop tests: the loader batch's labels, nothing moved."""
    return {"labels": batch["labels"], "host": batch}


def test_an_epoch_trains_whole_optimizer_steps_and_leaves_the_rest():
    """8 micro-batches with grad_accum 3: 2 optimizer steps; the last 2 micro-batches would otherwise be
    accumulated into the next epoch's first step, out of step with DeepSpeed's accumulation boundary."""
    from vidprism_ds.parallel.dims import ParallelDims
    from vidprism_ds.train.batch import BatchPlan
    from vidprism_ds.train.loop_state import LoopState, RunResult
    from vidprism_ds.train.trainer import Trainer

    trainer = Trainer.__new__(Trainer)  # the loop alone: no model, engine or process group
    trainer.batch, trainer.world_size, trainer.engine = BatchPlan(2, 3, ParallelDims(1)), 1, _Engine()
    trainer.dims = trainer.batch.dims
    trainer.train_loader = _CountingLoader(8)
    trainer.batches_per_epoch = trainer.batch.steps_per_epoch(8) * 3
    trainer.epoch_damage = EpochDamage(16)
    trainer.device, trainer.to_device = torch.device("cpu"), _host_only
    trainer.loader_pace = LoaderPace(0, 1.0)
    trainer.train_step = lambda batch: (None, SimpleNamespace(terms={}, total=torch.zeros(())))
    steps = []
    trainer.after_step = lambda state, output, losses: steps.append((state.step, state.batches_in_epoch))
    state = LoopState(result=RunResult(), stop=None, on_step=None)
    assert trainer._train_epoch(state, skip=0) is None
    assert steps == [(1, 3), (2, 6)] and trainer.train_loader.pulled == 6
    assert state.window_clips == 12


class _RecordingEngine:
    """Stands for DeepSpeed's engine: forwards to the model and keeps the keyword arguments it was given."""

    def __init__(self, model):
        self.model, self.kwargs = model, []

    def __call__(self, frames, **kwargs):
        self.kwargs.append(kwargs)
        return self.model(frames, **kwargs)


def test_the_training_step_hands_a_batch_s_frame_times_to_the_model():
    from vidprism_ds.model.video_model import build_video_model
    from vidprism_ds.train.compile import step_functions
    from vidprism_ds.train.trainer import Trainer

    cfg = load_config(None, ["model.backbone.image_size=32", "data.image_size=32", "data.num_frames=4",
                             "model.head.frame_time_encoding=true"])
    model = build_video_model(cfg.model, num_classes=3, num_frames=4).model
    trainer = Trainer.__new__(Trainer)  # the call site alone: no process group, DeepSpeed or data
    trainer.cfg, trainer.device, trainer.dtype = cfg, torch.device("cpu"), torch.float32
    trainer.engine, trainer.text_cd = _RecordingEngine(model), torch.randn(3, model.backbone.embed_dim)
    trainer.step_fns = step_functions(compiled=False)
    batch = {"frames": torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8), "labels": torch.tensor([0, 2])}
    times = torch.tensor([[0.0, 0.4, 0.433, 0.467], [1.0, 1.5, 2.0, 2.5]], dtype=torch.float64)
    _, losses = trainer._forward_loss(batch_to_device({**batch, "frame_times": times}, trainer.device, 32))
    given = trainer.engine.kwargs[-1]["frame_times"]
    assert given.dtype == torch.float32 and torch.equal(given, times.float())
    losses.total.backward()  # the times reach the head's time encoding
    assert model.head.frame_time_encoding.weight.grad.abs().amax() > 0
    trainer._forward_loss(batch_to_device(batch, trainer.device, 32))  # segment clips: no times, the paper's path
    assert trainer.engine.kwargs[-1] == {"frame_times": None}


class _DamagedLoader(_CountingLoader):
    def __iter__(self):
        for index in range(self.batches):
            yield {"labels": torch.zeros(2), "damaged": index % 2}  # 1 damaged sample every other batch


def test_each_epoch_s_damaged_samples_are_in_its_last_step_s_history_entry_and_metrics(tmp_path):
    from types import SimpleNamespace

    from vidprism_ds.parallel.dims import ParallelDims
    from vidprism_ds.train.batch import BatchPlan
    from vidprism_ds.train.loop_state import LoopState, RunResult
    from vidprism_ds.train.reporting import Reporter
    from vidprism_ds.train.trainer import Trainer

    cfg = load_config(None, [f"train.output_dir={tmp_path}", "logging.wandb_mode=disabled",
                             "logging.log_every_steps=100", "train.stop_check_every=100"])
    trainer = Trainer.__new__(Trainer)  # the loop and after_step: no model, engine or process group
    trainer.cfg, trainer.batch, trainer.world_size, trainer.engine = cfg, BatchPlan(2, 2, ParallelDims(1)), 1, _Engine()
    trainer.dims, trainer.device, trainer.ctx = trainer.batch.dims, torch.device("cpu"), SimpleNamespace(dp_group=None)
    trainer.train_loader, trainer.batches_per_epoch = _DamagedLoader(8), 8
    trainer.epoch_damage, trainer.to_device = EpochDamage(16), _host_only
    trainer.loader_pace = LoaderPace(0, 1.0)
    trainer.scheduler = SimpleNamespace(get_last_lr=lambda: [0.1])
    trainer.reporter = Reporter(cfg.logging, tmp_path, 0, {}, "run")
    logged = []
    trainer.reporter.log = lambda metrics, step, prefix="train": logged.append((step, metrics))
    loss = SimpleNamespace(terms={"ce": torch.tensor(1.0)}, total=torch.tensor(1.0))
    trainer.train_step = lambda batch: (None, loss)
    state = LoopState(result=RunResult(), stop=None, on_step=None)
    for state.epoch in range(2):
        assert trainer._train_epoch(state, skip=0) is None
    trainer._flush_history(state)
    damaged = [(h["step"], h.get("damaged_samples")) for h in state.result.history]
    assert damaged == [(1, None), (2, None), (3, None), (4, 4), (5, None), (6, None), (7, None), (8, 4)]
    assert logged == [(4, {"damaged_samples": 4}), (8, {"damaged_samples": 4})]
    lines = (tmp_path / "train_history.jsonl").read_text().splitlines()
    assert len(lines) == 8 and '"damaged_samples": 4' in lines[3]


def test_a_step_s_logged_loss_is_the_mean_of_its_micro_batches(tmp_path):
    """grad_accum 2: the history holds each optimizer step's mean over its 2 micro-batches (on several
    processes, then over the data-parallel ranks: tests/train/test_topology_free.py), not the last one's."""
    from vidprism_ds.parallel.dims import ParallelDims
    from vidprism_ds.train.batch import BatchPlan
    from vidprism_ds.train.loop_state import LoopState, RunResult
    from vidprism_ds.train.reporting import Reporter
    from vidprism_ds.train.trainer import Trainer

    cfg = load_config(None, [f"train.output_dir={tmp_path}", "logging.wandb_mode=disabled",
                             "logging.log_every_steps=100", "train.stop_check_every=100"])
    trainer = Trainer.__new__(Trainer)  # the loop and after_step: no model, engine or process group
    trainer.cfg, trainer.batch, trainer.world_size, trainer.engine = cfg, BatchPlan(2, 2, ParallelDims(1)), 1, _Engine()
    trainer.dims, trainer.device, trainer.ctx = trainer.batch.dims, torch.device("cpu"), SimpleNamespace(dp_group=None)
    trainer.train_loader, trainer.batches_per_epoch = _CountingLoader(4), 4
    trainer.epoch_damage, trainer.to_device = EpochDamage(16), _host_only
    trainer.loader_pace = LoaderPace(0, 1.0)
    trainer.scheduler = SimpleNamespace(get_last_lr=lambda: [0.1])
    trainer.reporter = Reporter(cfg.logging, tmp_path, 0, {}, "run")
    values = iter([1.0, 3.0, 5.0, 11.0])

    def train_step(batch):
        value = torch.tensor(next(values))
        return None, SimpleNamespace(terms={"ce": value * 2}, total=value)

    trainer.train_step = train_step
    state = LoopState(result=RunResult(), stop=None, on_step=None)
    assert trainer._train_epoch(state, skip=0) is None
    trainer._flush_history(state)
    assert [(h["step"], h["total"], h["ce"]) for h in state.result.history] == [(1, 2.0, 4.0), (2, 8.0, 16.0)]
