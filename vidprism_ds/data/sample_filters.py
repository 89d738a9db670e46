"""Sample stages between the source and the clips: the damage-aware loop every such stage runs, the
safe-member filter (frame JPEGs, ``json``, ``cls``), and this worker's share of the rank's batches (the
raw-video loader's). The shuffle buffer is what the per-rank shard order used before the global order
(``global_order``); ``bench/data.py --order`` still builds that order to compare the two."""

from __future__ import annotations

import itertools
import json
import re
import tarfile
from typing import Callable, Iterator, Optional

import webdataset as wds

from vidprism_ds.data.damage import DamagedSample, damage_marker, is_damaged
from vidprism_ds.data.seeding import slot_rng, split_count, worker_id_and_count

FRAME_MEMBER = re.compile(r"^\d{6}\.jpg$")


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
    rng = slot_rng(seed, epoch, rank, world_size, "samples")
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
        kept = {"__key__": sample.get("__key__"), "__url__": sample.get("__url__"),
                "__index__": sample.get("__index__", -1), "frames_jpeg": [sample[k] for k in frames],
                **_parse_json_and_cls(sample, bool(frames), num_classes)}
        if "__position__" in sample:  # training: the epoch position its random draws are keyed by
            kept["__position__"] = sample["__position__"]
        return kept

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
