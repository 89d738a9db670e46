"""Shard indexes: where each sample's members lie in its tar file, so the training order can read any
sample without streaming the shard up to it.

An index sits beside its shard (``shard-000000.tar`` -> ``shard-000000.tar.idx.json``)::

    {"format": "vidprism-shard-index", "version": 1, "bytes": <tar size>,
     "samples": [["000000042", {"000000.jpg": [offset, size], ..., "json": [...], "cls": [...]}], ...]}

``offset`` is where the member's data starts in the tar (after its header), ``size`` its length: a
member is read with one seek and one read. ``data_prep/shard.py`` writes the index with each shard (from
the offsets the tar writer assigned); ``python data_prep/index_shards.py SHARD_DIR`` writes the missing
ones for shards made before indexes existed (one pass over each shard's headers). A loader that finds no
index, or one whose ``bytes`` is not the tar's size (a shard replaced or cut short since), scans that
shard's headers itself once per worker (``scan_shard``) and warns: correct, only slower to start.

A truncated shard: the scan stops at the first member cut short, so the samples after it are missing
from the index; the loader then treats them as damaged (``vidprism_ds.data.damage``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Optional, Sequence

INDEX_SUFFIX = ".idx.json"
INDEX_FORMAT = "vidprism-shard-index"
INDEX_VERSION = 1

# one sample: (key, {extension: (data offset, size)})
SampleMembers = tuple[str, dict[str, tuple[int, int]]]


def index_path(shard_path: str | Path) -> Path:
    return Path(str(shard_path) + INDEX_SUFFIX)


def split_member_name(name: str) -> Optional[tuple[str, str]]:
    """(key, extension) as WebDataset groups members: the key is the base name up to its first dot."""
    key, dot, extension = os.path.basename(name).partition(".")
    return (key, extension) if dot else None


def group_members(members: Sequence[tuple[str, int, int]]) -> list[SampleMembers]:
    """(member name, data offset, size) in tar order -> samples in tar order (consecutive members of one key)."""
    samples: list[SampleMembers] = []
    for name, offset, size in members:
        parts = split_member_name(name)
        if parts is None:
            continue
        key, extension = parts
        if not samples or samples[-1][0] != key:
            samples.append((key, {}))
        samples[-1][1][extension] = (offset, size)
    return samples


def scan_shard(path: str | Path) -> tuple[list[SampleMembers], Optional[str]]:
    """(the samples found by reading the tar's headers, None or what cut the scan short). The headers are
    read with seeks over the members' data; a member cut short ends the scan and drops its sample."""
    members: list[tuple[str, int, int]] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if info.isreg():
                    members.append((info.name, info.offset_data, info.size))
    except tarfile.ReadError as err:  # not a tar, or truncated (tarfile raises on stepping past a short member)
        samples = group_members(members)
        return (samples[:-1] if samples else samples), f"not a whole tar file ({err})"
    size = Path(path).stat().st_size
    if members and members[-1][1] + members[-1][2] > size:  # the last member's data runs past the end
        return group_members(members)[:-1], "the last member is cut short"
    return group_members(members), None


def index_document(samples: list[SampleMembers], tar_bytes: int) -> dict:
    return {"format": INDEX_FORMAT, "version": INDEX_VERSION, "bytes": tar_bytes,
            "samples": [[key, {ext: list(span) for ext, span in members.items()}] for key, members in samples]}


def write_index_file(shard_path: str | Path, samples: list[SampleMembers], tar_bytes: int) -> Path:
    """Write the index beside ``shard_path`` atomically (temporary file, then rename)."""
    target = index_path(shard_path)
    partial = target.with_name("." + target.name + ".partial")
    partial.write_text(json.dumps(index_document(samples, tar_bytes), separators=(",", ":")), encoding="utf-8")
    os.replace(partial, target)
    return target


def load_index(shard_path: str | Path) -> Optional[list[SampleMembers]]:
    """The index beside ``shard_path`` when it is there, readable and made for the tar as it is now (same
    size); None otherwise (the caller scans the shard instead)."""
    path = index_path(shard_path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        tar_bytes = Path(shard_path).stat().st_size
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if (not isinstance(document, dict) or document.get("format") != INDEX_FORMAT
            or document.get("version") != INDEX_VERSION or document.get("bytes") != tar_bytes):
        return None
    try:
        return [(str(key), {str(ext): (int(span[0]), int(span[1])) for ext, span in members.items()})
                for key, members in document["samples"]]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


def ensure_index(shard_path: str | Path) -> bool:
    """Write the index of a shard that has no valid one (from a scan of its headers); whether it wrote one."""
    if load_index(shard_path) is not None:
        return False
    write_index_file(shard_path, scan_shard(shard_path)[0], Path(shard_path).stat().st_size)
    return True


def index_folder(shard_dir: str | Path, force: bool = False) -> tuple[int, int]:
    """Write the index of every shard the folder's manifest lists that has no valid one (all with
    ``force``). Returns (indexes written, shards already indexed)."""
    from vidprism_ds.data.manifest import load_manifest  # manifest imports nothing of this module

    written = kept = 0
    for shard in load_manifest(shard_dir).shards:
        if not Path(shard.path).is_file():
            continue
        if not force and load_index(shard.path) is not None:
            kept += 1
            continue
        samples, problem = scan_shard(shard.path)
        if problem is not None:
            print(f"index_shards.py: warning: {shard.path}: {problem}; indexed the {len(samples)} whole samples",
                  file=sys.stderr)
        write_index_file(shard.path, samples, Path(shard.path).stat().st_size)
        written += 1
    return written, kept


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="index_shards.py", description=(
        "Write the member index beside every shard of a shard folder (for shards made before data_prep/"
        "shard.py wrote indexes); the training loader reads samples where they lie with it."))
    parser.add_argument("shard_dirs", nargs="+", help="shard folders (the --out of data_prep/shard.py)")
    parser.add_argument("--force", action="store_true", help="rewrite indexes that are already valid")
    args = parser.parse_args(argv)
    for shard_dir in args.shard_dirs:
        try:
            written, kept = index_folder(shard_dir, args.force)
        except (FileNotFoundError, ValueError) as err:
            print(f"index_shards.py: error: {err}", file=sys.stderr)
            return 2
        print(f"{shard_dir}: {written} index(es) written, {kept} already valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
