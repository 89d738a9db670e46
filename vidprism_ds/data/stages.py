"""Pipeline stages: each is ``stage(samples: Iterator) -> Iterator`` (or a source ``() -> Iterator``).

``vidprism_ds.data.loaders`` and ``raw`` list them in order inside ``webdataset.DataPipeline``. Randomness is
seeded from (seed, epoch, slot[, purpose]) where *slot* = rank x workers + worker: a rank or worker
never shares a stream with another, and a run is reproducible. The rank and world size come in as
arguments; the worker id is read from ``torch.utils.data.get_worker_info`` inside the stage, i.e. in the
worker process that runs it.

webdataset's own stages are used where they give what training needs (``split_by_worker``, the
``shuffle`` buffer, ``batched`` in the loaders); where they cannot (the rank split, the epoch's shard
order, the epoch length, the evaluation ranges), the stage here says why in its docstring.

A damaged sample travels as a marker (``vidprism_ds.data.damage``): a stage that cannot use a sample
yields a marker in its place, every stage passes markers on untouched, and ``damage.skip_damaged``
(training) or ``invalidate_damaged`` (evaluation) deals with them at the end.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
import tarfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import webdataset as wds
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.config.validation import effective_hflip
from vidprism_ds.data.damage import LOST, DamagedSample, DamageLog, damage_marker, is_damaged
from vidprism_ds.data.sampling import (ClipSampling, ClipSource, LayoutError, eval_frame_picks,
                                       train_frame_picks)
from vidprism_ds.data.tar_reader import TarMember, shard_samples
from vidprism_ds.data.transforms import apply_clip_augmentation, draw_clip_augmentation, eval_views

FRAME_MEMBER = re.compile(r"^\d{6}\.jpg$")
SAFE_MEMBERS = ("json", "cls")


# ---------------------------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class Slot:
    index: int  # rank * workers_per_rank + worker
    count: int  # world_size * workers_per_rank


def worker_id_and_count() -> tuple[int, int]:
    """(worker id, workers per rank) inside a DataLoader worker; (0, 1) in the main process."""
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def current_slot(rank: int, world_size: int) -> Slot:
    worker, workers = worker_id_and_count()
    return Slot(index=rank * workers + worker, count=world_size * workers)


def seeded_rng(*parts: Any) -> random.Random:
    # repr of a tuple of ints/strings is stable across processes and Python runs (unlike hash())
    return random.Random(repr(parts))


def split_count(total: int, parts: int, part: int) -> int:
    """How many of ``total`` items part ``part`` of ``parts`` gets (the first ``total % parts`` get one more)."""
    return total // parts + (1 if part < total % parts else 0)


def slot_range(total: int, slot: Slot) -> tuple[int, int]:
    """Contiguous [start, stop) of ``total`` items for ``slot``; sizes differ by at most one."""
    return total * slot.index // slot.count, total * (slot.index + 1) // slot.count


# ---------------------------------------------------------------------------------------------- sources


def permutation_rounds(items: Sequence[Any], seed: int, epoch: int) -> Iterator[Any]:
    """Endless stream of ``items``: round r is a permutation of all of them seeded by (seed, epoch, r)."""
    if not items:
        raise ValueError("nothing to sample from: the shard/video list is empty")
    for round_index in itertools.count():
        order = list(items)
        seeded_rng(seed, epoch, round_index, "order").shuffle(order)
        yield from order


def endless_permutations(items: Sequence[Any], seed: int, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
    """This slot's endless share of ``permutation_rounds`` (training shards and raw videos): slot s takes
    every count-th item starting at s. Every slot gets items even when there are fewer items than slots,
    and within an epoch the items are spread evenly over the slots.

    webdataset's ``split_by_worker`` takes every workers-th item for this worker, then this rank takes
    every world_size-th of those (position = worker + workers x (rank + world_size x k), i.e. slot
    rank x workers + worker). The rank split is ours: ``wds.split_by_node`` reads the rank from RANK/
    WORLD_SIZE or ``torch.distributed``, while here the rank is an argument (a test builds every rank's
    loader in one process, and the data code never reads ``torch.distributed``). Nor is webdataset's
    resampling source (``wds.ResampledShards``): it draws with replacement, so within an epoch some shards
    would be read twice and others not at all. (``split_by_worker`` takes the worker from the WORKER and
    NUM_WORKERS environment variables when both are set: they must not be, for training.)
    """
    for_this_worker = wds.split_by_worker(permutation_rounds(items, seed, epoch))
    return itertools.islice(for_this_worker, rank, None, world_size)


def read_shards(shards: Iterator[tuple[str, int]]) -> Iterator[dict]:
    """(shard path, the manifest's sample count) -> lazy samples (see ``vidprism_ds.data.tar_reader``)."""
    for path, expected in shards:
        yield from shard_samples(path, expected)


@dataclass(frozen=True)
class ShardRange:
    path: str
    first: int  # first sample (position inside the shard) to keep
    stop: int  # one past the last
    base: int  # global index of the shard's sample 0
    samples: int  # the shard's sample count in the manifest


def eval_shard_ranges(shard_sizes: Sequence[tuple[str, int]], slot: Slot) -> list[ShardRange]:
    """The pieces of the shards that hold slot's contiguous range of the global sample order."""
    total = sum(n for _, n in shard_sizes)
    start, stop = slot_range(total, slot)
    ranges, base = [], 0
    for path, count in shard_sizes:
        first, last = max(start, base), min(stop, base + count)
        if first < last:
            ranges.append(ShardRange(path, first - base, last - base, base, count))
        base += count
    return ranges


def eval_sample_source(shard_sizes: Sequence[tuple[str, int]], rank: int, world_size: int) -> Iterator[dict]:
    """Raw samples of this slot's range, in global order, each with ``__index__`` (global position).

    A damage marker takes the positions it stands for (a shard that ends early: all its missing
    samples), cut to this slot's range, so the range's samples are accounted for exactly once.

    Not webdataset's splitters: they hand out whole shards, so slots would get sample counts that differ
    by up to a shard; here a range may start or end inside a shard, and every sample knows its position."""
    for piece in eval_shard_ranges(shard_sizes, current_slot(rank, world_size)):
        position = 0
        for sample in shard_samples(piece.path, piece.samples):
            width = sample.get(LOST, 1)
            first, stop = max(position, piece.first), min(position + width, piece.stop)
            if first < stop:
                if LOST in sample:
                    sample[LOST] = stop - first
                sample["__index__"] = piece.base + first
                yield sample
            position += width
            if position >= piece.stop:
                break


# ---------------------------------------------------------------------------------------------- filters


def map_undamaged(samples: Iterator[dict], make: Callable[[dict], Optional[dict]]) -> Iterator[dict]:
    """The loop of every stage that can find a sample damaged: damage markers pass on untouched; ``make``
    turns each other sample into its output (None: not a sample, dropped), and a ``DamagedSample`` it
    raises turns that sample into a marker naming the reason. Samples are processed in order, so a
    stage's random stream is drawn exactly as a plain loop would."""
    for sample in samples:
        if is_damaged(sample):
            yield sample
            continue
        try:
            output = make(sample)
        except DamagedSample as err:
            yield damage_marker(sample, str(err))
            continue
        if output is not None:
            yield output


def shuffle_buffer(samples: Iterator[dict], bufsize: int, seed: int, epoch: int, rank: int, world_size: int) -> Iterator[dict]:
    """webdataset's shuffle buffer of ``bufsize`` samples (0 or 1: no shuffling); while it fills, two
    samples go in per sample out, so the first batch does not wait for a full buffer.

    The random stream is ours, handed to ``wds.shuffle`` as its ``rng``: seeded by (seed, epoch, slot), so
    a resumed epoch shuffles exactly as the uninterrupted one. Left to itself ``wds.shuffle`` seeds from
    the process id and the clock, ``seed=`` gives every worker and rank the same stream, and
    ``wds.detshuffle`` seeds with seed + its own run counter (the same in every worker; seed 1 epoch 0
    equals seed 0 epoch 1)."""
    rng = seeded_rng(seed, epoch, current_slot(rank, world_size).index, "samples")
    return wds.shuffle(bufsize, initial=1, rng=rng)(iter(samples))


def keep_safe_members(samples: Iterator[dict], num_classes: Optional[int] = None) -> Iterator[dict]:
    """Keep only frame JPEGs, ``json`` and ``cls``: no other member is ever read, pickles included.
    Frames stay lazy (``TarMember``) until a clip picks them.

    A group of members with none of the three (a stray file in the tar) is not a sample and is passed
    over. A sample lacking some of them, whose ``json`` or ``cls`` does not parse, or whose label is not
    in ``[0, num_classes)`` (when given) becomes a damage marker."""
    def safe_members(sample: dict) -> Optional[dict]:
        frames = sorted(k for k in sample if FRAME_MEMBER.match(k))
        if not frames and "json" not in sample and "cls" not in sample:
            return None
        return {"__key__": sample.get("__key__"), "__url__": sample.get("__url__"),
                "__index__": sample.get("__index__", -1), "frames_jpeg": [sample[k] for k in frames],
                **_parse_json_and_cls(sample, bool(frames), num_classes)}

    yield from map_undamaged(samples, safe_members)


def _parse_json_and_cls(sample: dict, has_frames: bool, num_classes: Optional[int]) -> dict:
    missing = [name for name, present in (("frames", has_frames), ("json", "json" in sample), ("cls", "cls" in sample))
               if not present]
    if missing:
        raise DamagedSample(f"no {' or '.join(missing)} member")
    try:
        meta = json.loads(sample["json"].read().decode("utf-8"))
        label = int(sample["cls"].read().decode("ascii"))
    except (tarfile.TarError, ValueError) as err:  # cut-short member, bad UTF-8/ASCII, bad JSON, not an int
        raise DamagedSample(f"json/cls member unreadable ({err})") from None
    if not isinstance(meta, dict):
        raise DamagedSample("json member is not an object")
    if num_classes is not None and not 0 <= label < num_classes:
        raise DamagedSample(f"label {label} is outside the {num_classes} classes (0..{num_classes - 1})")
    return {"meta": meta, "label": label}


def take_worker_share(samples: Iterator[dict], batches_per_rank: int, batch_size: int) -> Iterator[dict]:
    """This worker's share of the rank's fixed number of batches, as samples (the rank's workers
    together give exactly ``batches_per_rank`` full batches).

    Not ``with_epoch``: webdataset's epoch length is one number for every worker, fixed before the
    workers start, so a rank's batches could only be a multiple of its worker count. Here the first
    ``batches_per_rank % workers`` workers take one batch more, and every rank runs exactly
    ``batches_per_rank`` steps, as DeepSpeed's collectives need."""
    worker, workers = worker_id_and_count()
    return itertools.islice(samples, split_count(batches_per_rank, workers, worker) * batch_size)


# ---------------------------------------------------------------------------------------------- clips


def read_member(member: TarMember) -> bytes:
    """A member's bytes; ``DamagedSample`` when the tar cuts them short."""
    try:
        return member.read()
    except tarfile.TarError as err:
        raise DamagedSample(f"{member.name}: {err}") from None


def decoder_message(err: RuntimeError) -> str:
    """torchvision's decode error without its C++ source location ("decode_jpeg, /…/decode_jpeg.cpp:171, ")."""
    return re.sub(r"^.*?\.cpp:\d+, ", "", str(err).splitlines()[0])


def decode_frame(member: TarMember) -> torch.Tensor:
    """uint8 (3, H, W) from one JPEG member; ``DamagedSample`` naming the member when it does not decode."""
    data = read_member(member)
    if not data:
        raise DamagedSample(f"{member.name}: empty JPEG")
    try:
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as err:  # torchvision reports libjpeg errors as RuntimeError
        raise DamagedSample(f"{member.name}: corrupt JPEG ({decoder_message(err)})") from None


def decode_jpegs(frames_jpeg: Sequence[TarMember], picks: Sequence[int]) -> torch.Tensor:
    """uint8 (len(picks), 3, H, W): read and decode only the picked frames, each distinct one once.
    ``DamagedSample`` when a frame does not read or decode, or the frames differ in size."""
    distinct = sorted(set(picks))
    frames = [decode_frame(frames_jpeg[p]) for p in distinct]
    if len({frame.shape for frame in frames}) > 1:
        raise DamagedSample(f"frames of different sizes: {sorted({tuple(f.shape[1:]) for f in frames})}")
    decoded = torch.stack(frames)
    if list(picks) == distinct:  # a segment or dense clip of distinct frames: already in pick order
        return decoded
    position = {p: i for i, p in enumerate(distinct)}
    return decoded[[position[p] for p in picks]]


def config_clip_sampling(cfg: DataConfig) -> ClipSampling:
    """data.clip_sampling and its parameters as the index maths takes them."""
    return ClipSampling(mode=cfg.clip_sampling, num_frames=cfg.num_frames, dense_stride=cfg.dense_stride,
                        burst_frames=cfg.multirate_burst_frames)


@dataclass(frozen=True)
class TrainClipSettings:
    num_frames: int
    image_size: int
    crop_scale_min: float
    flip: bool
    grayscale_prob: float
    sampling: ClipSampling = ClipSampling()  # data.clip_sampling; num_frames above is the clip length

    @classmethod
    def from_config(cls, cfg: DataConfig) -> TrainClipSettings:
        # a direction-sensitive preset is never flipped, whatever data.hflip says (validation also refuses it)
        return cls(num_frames=cfg.num_frames, image_size=cfg.image_size, crop_scale_min=cfg.crop_scale_min,
                   flip=effective_hflip(cfg), grayscale_prob=cfg.grayscale_prob, sampling=config_clip_sampling(cfg))


@dataclass(frozen=True)
class EvalClipSettings:
    num_frames: int
    image_size: int
    clips: int
    crops: int
    sampling: ClipSampling = ClipSampling()  # data.clip_sampling; num_frames above is the clip length

    @classmethod
    def from_config(cls, cfg: DataConfig) -> EvalClipSettings:
        return cls(num_frames=cfg.num_frames, image_size=cfg.image_size, clips=cfg.test_clips, crops=cfg.test_crops,
                   sampling=config_clip_sampling(cfg))

    @property
    def views(self) -> int:
        return self.clips * self.crops


def sampling_of(settings: TrainClipSettings | EvalClipSettings) -> ClipSampling:
    """The settings' clip sampling with their clip length (settings built by hand keep the default mode)."""
    return dataclasses.replace(settings.sampling, num_frames=settings.num_frames)


def uses_frame_times(settings: TrainClipSettings | EvalClipSettings) -> bool:
    """Batches carry ``frame_times`` in dense and multirate mode only: segment batches stay as they were."""
    return settings.sampling.mode != "segment"


def sample_clip_source(sample: dict) -> ClipSource:
    """The clip source of a shard sample (``keep_safe_members`` output); ``DamagedSample`` when its JSON
    describes frames it does not hold."""
    try:
        return ClipSource.from_meta(sample["meta"], len(sample["frames_jpeg"]))
    except LayoutError as err:
        raise DamagedSample(str(err)) from None


def clip_times(source: ClipSource, picks_per_clip: Sequence[Sequence[int]], repeat: int = 1) -> torch.Tensor:
    """float32 (clips x repeat, T) seconds of the picked frames (each clip's row ``repeat`` times in a row)."""
    rows = [[source.times[p] for p in picks] for picks in picks_per_clip for _ in range(repeat)]
    return torch.tensor(rows, dtype=torch.float32)


def train_clip(source: ClipSource, settings: TrainClipSettings, rng: random.Random, load) -> tuple[torch.Tensor, list[int]]:
    """(uint8 (T, 3, S, S), the picked stored frames): ``data.clip_sampling``'s picks
    (``sampling.train_frame_picks``) and one clip-wide augmentation, drawn from ``rng`` in that order.

    ``load(picks) -> uint8 (len(picks), 3, H, W)`` fetches the chosen frames (JPEG or video decode)."""
    picks = train_frame_picks(source, sampling_of(settings), rng)
    frames_t3hw = load(picks)
    height, width = frames_t3hw.shape[-2:]
    augmentation = draw_clip_augmentation(width, height, rng, settings.crop_scale_min, settings.flip,
                                          settings.grayscale_prob)
    return apply_clip_augmentation(frames_t3hw, augmentation, settings.image_size), picks


def eval_clip_views(source: ClipSource, settings: EvalClipSettings, load) -> tuple[torch.Tensor, list[list[int]]]:
    """(uint8 (V, T, 3, S, S), each test clip's picks): V = clips x crops, clip-major (view v = clip *
    crops + crop); the clips' frames are deterministic (``sampling.eval_frame_picks``)."""
    per_clip_picks = eval_frame_picks(source, sampling_of(settings), settings.clips)
    flat_t3hw = load([p for picks in per_clip_picks for p in picks])
    clips = flat_t3hw.split(settings.num_frames)
    return torch.cat([eval_views(clip, settings.image_size, settings.crops) for clip in clips], dim=0), per_clip_picks


def to_train_clips(samples: Iterator[dict], settings: TrainClipSettings, seed: int, epoch: int, rank: int,
                   world_size: int) -> Iterator[dict]:
    rng = seeded_rng(seed, epoch, current_slot(rank, world_size).index, "augment")

    def clip(sample: dict) -> dict:
        jpegs, source = sample["frames_jpeg"], sample_clip_source(sample)
        frames, picks = train_clip(source, settings, rng, lambda picks: decode_jpegs(jpegs, picks))
        times = {"frame_times": clip_times(source, [picks])[0]} if uses_frame_times(settings) else {}
        return {"frames": frames, "label": sample["label"], **times}

    yield from map_undamaged(samples, clip)


def to_eval_views(samples: Iterator[dict], settings: EvalClipSettings) -> Iterator[dict]:
    def views(sample: dict) -> dict:
        jpegs, source = sample["frames_jpeg"], sample_clip_source(sample)
        frames, picks = eval_clip_views(source, settings, lambda picks: decode_jpegs(jpegs, picks))
        times = {"frame_times": clip_times(source, picks, settings.crops)} if uses_frame_times(settings) else {}
        return {"frames": frames, "label": sample["label"], "index": sample["__index__"], "valid": True, **times}

    yield from map_undamaged(samples, views)


def padding_sample(settings: EvalClipSettings) -> dict:
    size = settings.image_size
    padding = {"frames": torch.zeros(settings.views, settings.num_frames, 3, size, size, dtype=torch.uint8),
               "label": 0, "index": -1, "valid": False}
    if uses_frame_times(settings):
        padding["frame_times"] = torch.zeros(settings.views, settings.num_frames, dtype=torch.float32)
    return padding


def invalidate_damaged(samples: Iterator[dict], settings: EvalClipSettings, damage: DamageLog) -> Iterator[dict]:
    """Evaluation: each damage marker is logged and becomes invalid samples (``valid`` False, label 0,
    one per sample it stands for, with their global indices), so this worker's count, and with it every
    rank's batch count, stays what the plan says; the metrics leave them out."""
    for sample in samples:
        if not is_damaged(sample):
            yield sample
            continue
        damage.record(sample)
        index = sample["__index__"]
        for offset in range(sample.get(LOST, 1)):
            yield {**padding_sample(settings), "index": index + offset if index >= 0 else -1}


def pad_to(samples: Iterator[dict], count: int, settings: EvalClipSettings) -> Iterator[dict]:
    """Exactly ``count`` samples: the stream, then invalid padding samples (``valid`` False)."""
    produced = 0
    for sample in samples:
        if produced >= count:
            raise RuntimeError(f"more samples than the manifest promised ({count} for this worker): "
                               "the shards and manifest.json disagree")
        produced += 1
        yield sample
    for _ in range(count - produced):
        yield padding_sample(settings)


# ---------------------------------------------------------------------------------------------- batches


def collate_frame_times(samples: list[dict]) -> dict[str, torch.Tensor]:
    """{"frame_times": (B, ...) float32} when the clips carry times (dense, multirate), else nothing."""
    if "frame_times" not in samples[0]:
        return {}
    return {"frame_times": torch.stack([s["frame_times"] for s in samples])}


def collate_train(samples: list[dict]) -> dict[str, torch.Tensor]:
    # default_collate stacks straight into shared memory inside a worker: no extra copy on the way out
    return {"frames": default_collate([s["frames"] for s in samples]),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
            **collate_frame_times(samples)}


def collate_eval(samples: list[dict]) -> dict[str, torch.Tensor]:
    return {"frames": default_collate([s["frames"] for s in samples]),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
            "valid": torch.tensor([s["valid"] for s in samples], dtype=torch.bool),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),
            **collate_frame_times(samples)}
