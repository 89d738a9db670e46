"""Atomic tar shard files: a shard exists under its final name only once it is complete and on disk.

A shard is written to ``.NAME.partial``, flushed and fsync'ed, then its report (``reports/NAME.json``,
also written atomically) is put in place, and only then is the tar renamed to ``NAME`` and the
directory fsync'ed. A shard counts as finished when both its tar and its report exist, so a kill at any
point leaves either a finished shard or nothing the next run will trust (stale partials are deleted).

Each shard's member index (``NAME.idx.json``, ``vidprism_ds.data.shard_index``) is written from the
offsets the tar writer assigned, before the rename: a shard under its final name always has its index.

Tar headers are deterministic (mtime 0, uid/gid 0, mode 644), so the same samples give the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Optional

from vidprism_ds.data.shard_index import group_members, write_index_file
from vidprism_ds.utils.files import atomic_write_bytes, fsync_directory

REPORTS_DIR = "reports"
PARTIAL_SUFFIX = ".partial"


def shard_name(prefix: str, shard_index: int) -> str:
    return f"{prefix}-{shard_index:06d}.tar"


def report_path(out_dir: Path, name: str) -> Path:
    return out_dir / REPORTS_DIR / (Path(name).stem + ".json")


def write_file_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a torn one. The temporary name is unique to this
    call: several processes may write the same file at once (the array tasks of a sharding job that
    finish together all write the merged manifest), and each must rename its own complete copy."""
    atomic_write_bytes(path, data)


def write_json_atomically(path: Path, payload: Any) -> None:
    write_file_atomically(path, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_report(out_dir: Path, name: str) -> Optional[dict]:
    """The report of a finished shard, or None when the shard is not finished."""
    tar_path, report = out_dir / name, report_path(out_dir, name)
    if not (tar_path.is_file() and report.is_file()):
        return None
    try:
        return json.loads(report.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged report: redo the shard


def remove_partials(out_dir: Path) -> int:
    removed = 0
    for folder in (out_dir, out_dir / REPORTS_DIR):
        if folder.is_dir():
            for partial in folder.glob("." + "*" + PARTIAL_SUFFIX):
                partial.unlink()
                removed += 1
    return removed


class AtomicShardWriter:
    def __init__(self, out_dir: Path, name: str):
        self.out_dir, self.name = out_dir, name
        self.final_path = out_dir / name
        self.partial_path = out_dir / ("." + name + PARTIAL_SUFFIX)
        self._file = open(self.partial_path, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self.samples = 0
        # where each member's data lies, for the shard's index (vidprism_ds.data.shard_index)
        self.members: list[tuple[str, int, int]] = []

    def add_sample(self, key: str, members: dict[str, bytes]) -> None:
        for extension in sorted(members):
            data = members[extension]
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
            # the data ends the tar so far, padded to whole 512-byte blocks
            padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            self.members.append((info.name, self._tar.offset - padded, len(data)))
        self.samples += 1

    def commit(self, report: dict) -> int:
        """Finish the shard under its final name; returns its size in bytes."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        size = self.partial_path.stat().st_size
        (self.out_dir / REPORTS_DIR).mkdir(exist_ok=True)
        write_json_atomically(report_path(self.out_dir, self.name), {**report, "bytes": size})
        # the index before the shard's final name: a shard under its name always has its index
        write_index_file(self.final_path, group_members(self.members), size)
        os.replace(self.partial_path, self.final_path)
        fsync_directory(self.out_dir)
        return size

    def abort(self) -> None:
        self._tar.close()
        self._file.close()
        self.partial_path.unlink(missing_ok=True)
