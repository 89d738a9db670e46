"""The experiment config tree.

One typed tree of dataclasses is the single source of truth for an experiment. YAML is only its
serialisation (see ``vidprism_ds.config.io``). Every field has a default, so an empty YAML file is a
valid config: these defaults, not the demo (train.py runs the demo, ``vidprism_ds/train/demo.yaml``,
only without ``--config``), and it names no data, so train.py refuses it at start-up naming
``data.train_shards``. ``validate`` checks cross-field constraints and raises ``ConfigError`` with the
dotted key that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or conflicts with another key."""


# The backbone's freeze modes, named because the frame encoder checks its own argument against them.
FreezeMode = Literal["none", "all", "partial"]


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    # open_clip architecture name ("ViT-B-16", "ViT-L-14") or "tiny" (a small ViT of the same
    # family, randomly initialised; used by tests and the demo).
    arch: str = "tiny"
    # Local weights file, OpenAI's TorchScript/state-dict format or open_clip's; never downloaded.
    pretrained_path: Optional[str] = None
    # "none": fine-tune everything; "all": frozen encoder; "partial": only the last
    # `trainable_blocks` transformer blocks (plus ln_post/proj) learn.
    freeze: FreezeMode = "none"
    trainable_blocks: int = 0
    # Which transformer blocks recompute their forward in the backward pass instead of keeping their
    # activations: "none", "full" (every block), "blocks:K" (the first K of the blocks that train), or
    # "auto" (on a GPU, the fastest setting the memory estimate fits on the device: none, then fewer
    # blocks, then full; none on a CPU). true/false are full/none. docs/backbone.md#gradient-checkpointing
    grad_checkpointing: Union[bool, str] = "auto"
    image_size: int = 224
    # MLP activation of the towers: QuickGELU for OpenAI's CLIP weights (the paper's backbone);
    # false (plain GELU) for open_clip's LAION-trained weights.
    quick_gelu: bool = True


@dataclass
class HeadConfig:
    # "default" fixes the official code's quirks (per-clip gating, summed fusion updates,
    # diversity between experts); "official" reproduces the official numerics exactly.
    mode: Literal["default", "official"] = "default"
    sampling_rates: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    # Streams whose rate is >= this are "slow"; the others are "fast".
    slow_rate_min: int = 8
    sampler_tau: float = 0.1
    sampler_alpha_mix: float = 0.7
    rank_score_temp: float = 0.2
    fusion_gate_threshold: float = 0.3
    expert_heads: int = 4
    expert_ffn_mult: int = 2
    readout_heads: int = 4
    # Ablation switches (issue 6): without sampler -> plain strided mean pooling; without fusion;
    # temporal position embeddings inside the experts (the official experts have none).
    use_sampler: bool = True
    use_fusion: bool = True
    expert_pos_embed: bool = False
    # Scaled experts (beyond the paper): several experts per rate, top-k routed per stream.
    experts_per_rate: int = 1
    router_topk: int = 1
    router_capacity_factor: Optional[float] = None
    # Frame timestamps (docs/model.md#frame-timestamps-multirate-clips): when a batch carries
    # `frame_times` (dense and multirate clips), an encoding of each frame's time in the clip and of the
    # gaps to its neighbours is added to its token through a zero-initialised projection. Off: no
    # parameters and the times are ignored. Periods of the sinusoids: `frame_time_periods` values spaced
    # geometrically from `frame_time_min_period_s` (finer than a source-frame gap) to
    # `frame_time_max_period_s` (longer than a video).
    frame_time_encoding: bool = False
    frame_time_periods: int = 8
    frame_time_min_period_s: float = 0.05
    frame_time_max_period_s: float = 64.0
    # Homogeneous + fusion ablation (model.variant: homogeneous only): the bidirectional fusion between
    # the experts' full-rate streams, expert e counted slow or fast by sampling_rates[e] as in VidPrism,
    # every convolution with stride 1 (all streams have one length).
    homogeneous_fusion: bool = False


@dataclass
class LossWeights:
    """Weights of the loss terms; the defaults are the official recipe's."""

    ce: float = 1.0
    balance: float = 0.01
    contrastive: float = 0.01
    diversity: float = 0.005
    rank: float = 0.1
    router_aux: float = 0.01
    router_z: float = 0.0


@dataclass
class ModelConfig:
    # "vidprism", the "meanpool" baseline (frame-bag: vidprism_ds.model.video_model) or the
    # "homogeneous" baseline (MoTE-style: E experts all reading the full-rate stream,
    # vidprism_ds.model.homogeneous_head).
    variant: Literal["vidprism", "meanpool", "homogeneous"] = "vidprism"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    # Class count; 0 means "take it from the dataset's label list".
    num_classes: int = 0
    # Where class text embeddings are cached (keyed by backbone and label list).
    text_cache_dir: str = ".cache/text_embeddings"


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    # Preset name (k400, k600, k700, k710, ucf101, hmdb51, ssv2, synthetic) or "custom".
    dataset: str = "synthetic"
    # Label list file (one class name per line); empty = the preset's packaged list.
    labels: str = ""
    # WebDataset shard directories (each holds *.tar and manifest.json).
    train_shards: str = ""
    val_shards: str = ""
    num_frames: int = 8
    image_size: int = 224
    # Random horizontal flip of training clips. null: the preset decides (flip, except the
    # direction-sensitive SSv2 and synthetic videos, which are never flipped); "custom" must say true or
    # false explicitly (vidprism_ds.data.presets.effective_hflip).
    hflip: Optional[bool] = None
    grayscale_prob: float = 0.2
    # random-resized-crop area range
    crop_scale_min: float = 0.4
    num_workers: int = 2
    # Not used since the global training order (docs/data.md#the-global-training-order); kept so that
    # configs that set it still load.
    shuffle_buffer: int = 256
    # Shards per shuffle block of the global training order: the samples of this many shards (consecutive
    # in the epoch's shard permutation) are shuffled together. Larger mixes more, and reads from more
    # files at a time (docs/data.md#the-global-training-order).
    shuffle_block_shards: int = 8
    # Multi-view evaluation: temporal clips x spatial crops per video.
    test_clips: int = 1
    test_crops: int = 1
    # How a clip's frames are chosen from a shard (docs/data.md#clip-sampling): "segment" (TSN segments over
    # the sparse whole-video base; the paper's sampling), "dense" (consecutive frames of one dense burst) or
    # "multirate" (a segment clip followed by consecutive burst frames, with their timestamps passed to the head;
    # the head's fast rate groups read the burst part, docs/model.md#multirate-clips-in-the-head).
    clip_sampling: Literal["segment", "dense", "multirate"] = "segment"
    # "dense": source frames between two consecutive clip frames (1 = consecutive). The shards' bursts must
    # hold (num_frames - 1) x dense_stride + 1 frames (data_prep/shard.py --burst-length).
    dense_stride: int = 1
    # "multirate": how many of the clip's num_frames are consecutive burst frames, at the clip's end (the
    # frames before them are a segment clip over the whole video); 0 = half of num_frames.
    multirate_burst_frames: int = 0
    # Raw videos for quick evaluation without shards (vidprism_ds.data.build_raw_eval_loader): a list
    # file, the folder its paths are relative to (empty = the list's folder) and its format
    # ("auto", "path_label", "path_frames_label", "kinetics_csv", "ssv2_json").
    val_list: str = ""
    video_root: str = ""
    list_format: str = "auto"
    # Where training/evaluation JPEG frames are decoded: "cpu" in the loader workers (the default), or
    # "cuda": workers pass the JPEG bytes and the training process decodes each batch on the GPU
    # (nvJPEG through torchvision.io.decode_jpeg), then crops and resizes there.
    decode_device: Literal["cpu", "cuda"] = "cpu"
    # Evaluation runs a batch's views through the model in chunks of at most this many MiB of uint8
    # frames (a 4 clips x 3 crops batch of 32-frame 224 px videos is ~1.8 GiB), so host and device
    # memory stay bounded whatever data.test_clips x data.test_crops is.
    eval_chunk_mib: int = 256
    # Damaged samples (a truncated tar member, a corrupt JPEG, a label outside the classes) are skipped and
    # logged with their shard and key; more than this many in one epoch on one loader worker stops the run
    # with an error naming the last one.
    max_bad_samples: int = 16


# --------------------------------------------------------------------------------------------------
# Optimisation, training, parallelism, logging
# --------------------------------------------------------------------------------------------------


@dataclass
class OptimConfig:
    lr: float = 5e-4
    # Backbone learning rate = lr * clip_ratio (official K400: 0.07).
    clip_ratio: float = 0.1
    weight_decay: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    warmup_steps: int = 0
    # Cosine decay floor, as a fraction of the peak lr.
    min_lr_ratio: float = 0.0
    # Clip the global gradient norm to this; 0 = off, and DeepSpeed then does not compute the norm at all
    # (a pass over every gradient and a host read each optimizer step).
    grad_clip: float = 1.0
    # bf16: skip an optimizer step whose gradients hold inf or nan (DeepSpeed's overflow check, another
    # pass and host read each step). false saves them, for runs whose numerics are known to be sound.
    skip_nonfinite_steps: bool = True


@dataclass
class TrainConfig:
    epochs: int = 1
    # Clips per GPU per micro-step (fixed by memory); global batch = micro_batch * grad_accum * data-parallel
    # size (the world size: every rank reads its own data, expert parallelism included).
    micro_batch: int = 8
    # With train.global_batch set this is derived for the world size at hand (global_batch / (micro_batch x
    # world size)): leave it at 1, or set the value it derives to (any other is refused naming both keys).
    grad_accum: int = 1
    # Clips per optimizer step over all ranks, the invariant of a recipe: the same run on 1 or 64 GPUs takes
    # the same optimizer steps of the same batch, so warmup and cosine are the same (vidprism_ds.train.batch).
    # 0 = not set: the global batch is micro_batch x grad_accum x world size, whatever the world size.
    global_batch: int = 0
    # How optim.lr follows the global batch when it differs from train.lr_base_batch: "none" (the default;
    # with train.global_batch fixed the batch does not change), "linear" (lr x global / base) or "sqrt"
    # (lr x sqrt(global / base)), as mmaction2's auto_scale_lr.
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    # The global batch optim.lr was tuned for; needed by lr_scaling linear or sqrt.
    lr_base_batch: int = 0
    seed: int = 0
    output_dir: str = "runs/demo"
    save_every_steps: int = 0
    eval_every_epochs: int = 1
    keep_checkpoints: int = 2
    eval_only: bool = False
    resume: bool = True
    # Stop after this many optimizer steps (0 = run all epochs); for smoke tests and benchmarks.
    max_steps: int = 0
    # Fine-tune from this checkpoint's weights (a consolidated state dict of VideoClassifier); step,
    # optimizer and schedule start afresh. Empty = start from the backbone's pretrained weights only.
    init_from: str = ""
    # How init_from's classifier rows map to this dataset's classes: "" = the same classes, loaded as
    # they are; "k400"/"k600"/"k700" = the checkpoint has the 710-way Kinetics-710 classifier and this
    # dataset's rows are sliced out of it (vidprism_ds.model.classifier_slicing); "fresh" = the
    # checkpoint's classifier is dropped and a new one trained (UCF101, HMDB51, SSv2 from K710).
    init_class_map: str = ""
    # After training finishes, write the consolidated fp32 weights to <output_dir>/export/model_fp32.pt
    # (the file the fine-tuning presets' train.init_from names); "" = do not.
    export_on_finish: str = "export/model_fp32.pt"
    # "auto": bf16 on a GPU, fp32 on the CPU. "bf16" also runs on the CPU (DeepSpeed's CPU accelerator
    # supports it; the tests run the bf16 path that way). Losses and logits are computed in fp32.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # torch.compile the head (whole), the backbone (per transformer block), the input normalisation and the
    # loss combination before DeepSpeed wraps the model. "auto": on a GPU, where it halves the step, and
    # not on the CPU, where the first step would spend minutes compiling (docs/training.md).
    compile: Union[bool, Literal["auto"]] = "auto"
    # Where compiled graphs are cached on disk so that a requeued or resumed run does not compile again;
    # "" = <output_dir>/compile_cache. Inductor's and Triton's caches both go there.
    compile_cache_dir: str = ""
    # Pre-emption signals are agreed across ranks every this many optimizer steps (one small all-reduce
    # and one host read each time); SLURM's warning comes minutes before the limit, so a few steps' delay
    # costs nothing.
    stop_check_every: int = 10
    # Refuse to start when the estimated peak GPU memory per rank exceeds this fraction of the device's
    # memory (vidprism_ds.train.memory); 0 switches the check off (the estimate is still printed).
    memory_limit_fraction: float = 0.95


@dataclass
class ParallelConfig:
    # Expert-parallel group size: experts are spread over `ep_size` ranks.
    ep_size: int = 1
    # Tensor-parallel group size for the CLIP frame encoder (megatron-core layers; docs/parallel.md):
    # each ViT block's attention heads and MLP width are split over `tp_size` ranks of one node.
    tp_size: int = 1


@dataclass
class LoggingConfig:
    log_every_steps: int = 10
    # "online", "offline" (the default when no API key is set) or "disabled".
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    wandb_project: str = "vidprism-ds"
    run_name: str = ""


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
