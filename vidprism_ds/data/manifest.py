"""``manifest.json``: what a shard directory holds; written by the sharder, read by the loaders.

Keys: ``format`` ("vidprism-shards"), ``version``, ``dataset``, ``classes`` (names, line N = id N; empty
when the list had integer labels and no class list was given), ``num_classes``, ``frame_settings`` (the
sharder's ``FrameSettings``: base and, since multi-rate shards, ``burst_count``/``burst_length``/``burst_fps``),
``shard_size`` (list rows per shard), ``source`` (list file, its format and sha256, video root),
``shards`` (per shard: ``name``, ``samples``, ``bytes``, ``rows`` = [first, stop) list rows),
``num_samples``, ``num_videos_listed``, ``skipped`` (every row not written: ``index``, ``line``,
``path``, ``reason``), ``skipped_by_reason``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from vidprism_ds.data.sampling import ClipSampling

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "vidprism-shards"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ShardEntry:
    path: str  # absolute path of the tar file
    samples: int
    bytes: Optional[int] = None  # file size the sharder wrote; None when the manifest does not say


@dataclass(frozen=True)
class ShardManifest:
    shard_dir: Path
    shards: tuple[ShardEntry, ...]
    classes: tuple[str, ...]
    num_classes: int
    dataset: str
    frame_settings: dict
    raw: dict  # the whole JSON document

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def path(self) -> Path:
        return self.shard_dir / MANIFEST_NAME


def load_manifest(shard_dir: str | Path) -> ShardManifest:
    """Read and check ``shard_dir/manifest.json``. Every problem (no such folder, no manifest, not JSON,
    a missing or mistyped key) is a one-line ``FileNotFoundError``/``ValueError`` naming the path."""
    shard_dir = Path(shard_dir)
    path = shard_dir / MANIFEST_NAME
    if not shard_dir.is_dir():
        raise FileNotFoundError(f"{shard_dir}: no such shard folder")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is {shard_dir} the --out of a finished data_prep/shard.py run?")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:  # a garbled or half-copied file
        raise ValueError(f"{path}: not a JSON document ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT or raw.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest")
    return ShardManifest(shard_dir=shard_dir, shards=_shard_entries(raw, shard_dir, path),
                         classes=tuple(_string_list(raw.get("classes", []), path, "classes")),
                         num_classes=_count(raw.get("num_classes"), path, "num_classes"),
                         dataset=raw.get("dataset", "custom"), frame_settings=dict(raw.get("frame_settings", {})),
                         raw=raw)


def _count(value, path: Path, what: str) -> int:
    # bool is an int in Python; a JSON true is never a count
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{path}: {what} must be a whole number >= 0, got {value!r}")
    return value


def _string_list(value, path: Path, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: {what} must be a list of strings")
    return value


def _shard_entries(raw: dict, shard_dir: Path, path: Path) -> tuple[ShardEntry, ...]:
    shards = raw.get("shards")
    if not isinstance(shards, list):
        raise ValueError(f"{path}: no 'shards' list")
    entries = []
    for number, shard in enumerate(shards):
        if not isinstance(shard, dict) or not isinstance(shard.get("name"), str):
            raise ValueError(f"{path}: shards[{number}] has no 'name'")
        where = f"shards[{number}] ({shard['name']})"
        size = _count(shard["bytes"], path, f"{where} bytes") if "bytes" in shard else None
        entries.append(ShardEntry(path=str(shard_dir / shard["name"]),
                                  samples=_count(shard.get("samples"), path, f"{where} samples"), bytes=size))
    return tuple(entries)


def check_shard_files(manifest: ShardManifest) -> None:
    """Every shard the loaders will read (samples > 0) must be a file: ``FileNotFoundError`` naming the
    first missing one. A file whose size differs from the manifest's is only warned about (a truncated
    copy, usually): its damaged samples are skipped while reading (``vidprism_ds.data.damage``)."""
    missing = []
    for shard in manifest.shards:
        if shard.samples == 0:
            continue
        file = Path(shard.path)
        if not file.is_file():
            missing.append(shard.path)
            continue
        size = file.stat().st_size
        if shard.bytes is not None and size != shard.bytes:
            logger.warning("%s: %d bytes, %s says %d: truncated or replaced since sharding?", shard.path, size,
                           manifest.path, shard.bytes)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{manifest.path} lists {missing[0]}, which does not exist{more}")


def check_classes(manifest: ShardManifest, class_names: Sequence[str], source: str) -> None:
    """``ValueError`` naming both lists when the manifest records classes and ``class_names`` (described
    by ``source``, e.g. the data.labels file) is not the same list in the same order: labels are ids, so a
    different list trains and reports the wrong classes without any other error."""
    recorded = list(manifest.classes)
    if not recorded or recorded == list(class_names):
        return
    if len(recorded) != len(class_names):
        detail = f"{len(class_names)} classes there, {len(recorded)} recorded"
    else:
        first = next(i for i, (a, b) in enumerate(zip(class_names, recorded)) if a != b)
        detail = f"class {first} is {class_names[first]!r} there, {recorded[first]!r} recorded"
    raise ValueError(f"{source} does not match the classes recorded in {manifest.path} ({detail}); use the "
                     "class list the shards were made with (data_prep/shard.py --labels)")


def check_clip_sampling(manifest: ShardManifest, sampling: ClipSampling) -> None:
    """``ValueError`` saying how to re-shard when ``data.clip_sampling`` needs longer dense bursts than the
    manifest's ``frame_settings`` record (shards written before multi-rate shards record none)."""
    span = sampling.burst_span
    if span == 0:
        return  # segment sampling reads the base, which every shard has
    settings = manifest.frame_settings
    count, length = settings.get("burst_count", 0), settings.get("burst_length", 0)
    if count >= 1 and length >= span:
        return
    made = (f"were made with --burst-count {count} --burst-length {length}" if "burst_count" in settings
            else "have no dense bursts or frame timestamps (written before multi-rate shards)")
    raise ValueError(f"{manifest.path}: data.clip_sampling={sampling.mode} needs dense bursts of at least {span} "
                     f"frames per clip, and these shards {made}; re-shard with data_prep/shard.py "
                     f"--burst-count {max(count, 2)} --burst-length {max(span, 16)}, or use data.clip_sampling=segment")
