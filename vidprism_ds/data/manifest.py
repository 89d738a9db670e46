"""``manifest.json``: what a shard directory holds; written by the sharder, read by the loaders.

Keys: ``format`` ("vidprism-shards"), ``version``, ``dataset``, ``classes`` (names, line N = id N; empty
when the list had integer labels and no class list was given), ``num_classes``, ``frame_settings``,
``shard_size`` (list rows per shard), ``source`` (list file, its format and sha256, video root),
``shards`` (per shard: ``name``, ``samples``, ``bytes``, ``rows`` = [first, stop) list rows),
``num_samples``, ``num_videos_listed``, ``skipped`` (every row not written: ``index``, ``line``,
``path``, ``reason``), ``skipped_by_reason``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "vidprism-shards"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ShardEntry:
    path: str  # absolute path of the tar file
    samples: int


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


def load_manifest(shard_dir: str | Path) -> ShardManifest:
    shard_dir = Path(shard_dir)
    path = shard_dir / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is {shard_dir} the --out of a finished data_prep/shard.py run?")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("format") != MANIFEST_FORMAT or raw.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest")
    shards = tuple(ShardEntry(path=str(shard_dir / s["name"]), samples=int(s["samples"])) for s in raw["shards"])
    return ShardManifest(shard_dir=shard_dir, shards=shards, classes=tuple(raw.get("classes", [])),
                         num_classes=int(raw["num_classes"]), dataset=raw.get("dataset", "custom"),
                         frame_settings=dict(raw.get("frame_settings", {})), raw=raw)
