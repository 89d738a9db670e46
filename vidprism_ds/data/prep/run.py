"""The sharding run: list rows -> isolated decode workers -> ordered, atomic tar shards -> manifest.

Determinism and resume. Shard k holds list rows [k * shard_size, (k + 1) * shard_size), in list order,
whatever happens to individual videos (a skipped row just leaves its shard one sample shorter). So the
sample set of every shard is a function of the list and the settings alone, and a re-run after a kill
keeps every finished shard (tar + report present), deletes stale partial files and redoes only the
rest. The settings a directory was made with are kept in ``reports/settings.json``; resuming with
different settings or a different list is refused rather than mixing two datasets.

Order and memory. Workers finish out of order; rows are written in order, with at most ``max_ahead``
finished-but-not-yet-written samples held in memory (dispatch stops that far ahead of the oldest
unfinished row, e.g. one that is hanging until its timeout).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence


from vidprism_ds.data.manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION
from vidprism_ds.data.prep.encode import (EncodedSample, EncodeTask, SkippedVideo, encode_video, sample_key,
                                          worker_initializer)
from vidprism_ds.data.prep.pool import IsolatedProcessPool, TaskOutcome
from vidprism_ds.data.prep.writer import (REPORTS_DIR, AtomicShardWriter, read_report, remove_partials,
                                          shard_name, write_json_atomically)
from vidprism_ds.data.sampling import FrameSettings
from vidprism_ds.data.shard_index import ensure_index
from vidprism_ds.data.video_lists import VideoEntry
from vidprism_ds.utils.progress import progress_bar

SETTINGS_FILE = "settings.json"


class SettingsMismatch(ValueError):
    """The output directory holds shards made from another list or with other settings."""


@dataclass
class ShardJob:
    entries: Sequence[VideoEntry]
    out_dir: Path
    frames: FrameSettings
    classes: list[str]
    num_classes: int
    source: dict  # list path, list format, sha256, root: recorded in the manifest, checked on resume
    dataset: str = "custom"
    shard_size: int = 128
    prefix: str = "shard"
    workers: int = 2
    timeout_s: float = 120.0
    mp_context: str = "spawn"
    max_ahead: int = 0  # 0 = 4 x workers + 4
    decoder_logs: bool = False  # let the decoder print its own messages

    def fingerprint(self) -> dict:
        """What must be equal for a resumed run to continue this directory."""
        return {"frame_settings": asdict(self.frames), "shard_size": self.shard_size, "prefix": self.prefix,
                "list_sha256": self.source.get("sha256"), "rows": len(self.entries), "classes": list(self.classes),
                "num_classes": self.num_classes}


@dataclass
class ShardRunSummary:
    rows: int
    samples: int = 0
    bytes: int = 0
    shards: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    skipped: list[dict] = field(default_factory=list)
    workers_replaced: int = 0

    def skipped_by_reason(self) -> Counter:
        return count_reasons(self.skipped)

    def text(self) -> str:
        processed_rate = (self.rows / self.seconds) if self.seconds > 0 else float("inf")
        lines = [f"wrote {self.samples} of {self.rows} videos into {self.shards} shards "
                 f"({self.shards_reused} kept from an earlier run), {self.bytes / 1e6:.1f} MB, "
                 f"in {self.seconds:.1f} s ({processed_rate:.1f} videos/s)"]
        if self.skipped:
            by_reason = ", ".join(f"{count} {reason}" for reason, count in self.skipped_by_reason().most_common())
            lines.append(f"skipped {len(self.skipped)}: {by_reason} (details in {MANIFEST_NAME})")
        if self.workers_replaced:
            lines.append(f"{self.workers_replaced} decoder workers were replaced after a crash or timeout")
        return "\n".join(lines)


def count_reasons(skipped: list[dict]) -> Counter:
    # group "cannot open as video: <decoder detail>" under its first clause
    return Counter(item["reason"].split(":")[0] for item in skipped)


def _check_settings(job: ShardJob) -> None:
    reports = job.out_dir / REPORTS_DIR
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / SETTINGS_FILE
    current = job.fingerprint()
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        differing = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if differing:
            raise SettingsMismatch(f"{job.out_dir} holds shards made with different {', '.join(differing)}; "
                                   "use another --out (or delete it) instead of mixing datasets")
    else:
        write_json_atomically(path, current)


def _skip_record(index: int, entry: VideoEntry, reason: str) -> dict:
    return {"index": index, "line": entry.line, "path": entry.path, "video_id": entry.video_id, "reason": reason}


class _OrderedResults:
    """Outcomes of the pool, handed out by list row in list order."""

    def __init__(self, outcomes: Iterator[TaskOutcome], row_of_task: list[int]):
        self._outcomes, self._row_of_task = outcomes, row_of_task
        self._buffer: dict[int, TaskOutcome] = {}

    def take(self, row: int) -> TaskOutcome:
        while row not in self._buffer:
            outcome = next(self._outcomes)
            self._buffer[self._row_of_task[outcome.task_id]] = outcome
        return self._buffer.pop(row)


class _Progress:
    """The progress bar: rows done, and how many of them were skipped in this run."""

    def __init__(self, rows: int, rows_done_before: int, enabled: bool):
        # a tqdm bar on a terminal, plain periodic lines in a log file (sbatch, CI)
        self._bar = progress_bar(total=rows, initial=rows_done_before, unit="video", disable=not enabled)
        self._skipped = 0

    def row_done(self, skipped: bool) -> None:
        self._skipped += skipped
        self._bar.update(1)
        self._bar.set_postfix(skipped=self._skipped, refresh=False)

    def close(self) -> None:
        self._bar.close()


def _skip_reason(outcome: TaskOutcome) -> Optional[str]:
    """Why a decoded row is not written; None when the worker returned a sample to write."""
    if not outcome.ok:
        return outcome.failure
    if isinstance(outcome.value, SkippedVideo):
        return outcome.value.reason
    if isinstance(outcome.value, EncodedSample):
        return None
    return f"error: encoder returned {type(outcome.value).__name__}"


def _write_shard(job: ShardJob, shard: int, rows: tuple[int, int], results: Optional[_OrderedResults],
                 progress: _Progress) -> dict:
    """Write shard ``shard`` (list rows [rows[0], rows[1])) atomically; returns its report. A failure
    part-way leaves no shard behind (the partial file is removed), so a re-run redoes this shard."""
    name = shard_name(job.prefix, shard)
    writer = AtomicShardWriter(job.out_dir, name)
    try:
        skipped: list[dict] = []
        for i in range(*rows):
            entry = job.entries[i]
            reason = entry.problem
            if reason is None:
                outcome = results.take(i)
                reason = _skip_reason(outcome)
                if reason is None:
                    writer.add_sample(sample_key(i), outcome.value.members)
            if reason is not None:
                skipped.append(_skip_record(i, entry, reason))
            progress.row_done(skipped=reason is not None)
        report = {"name": name, "shard": shard, "rows": list(rows), "samples": writer.samples, "skipped": skipped}
        report["bytes"] = writer.commit(report)
        return report
    except BaseException:
        writer.abort()
        raise


def run_sharding(job: ShardJob, encode_fn: Callable[[EncodeTask], object] = encode_video,
                 initializer: Optional[Callable[[], None]] = None,
                 progress: bool = True) -> ShardRunSummary:
    """Write every unfinished shard of ``job`` and the manifest. ``encode_fn`` runs in the worker
    processes (tests swap it for one that crashes or hangs); ``initializer`` defaults to
    ``worker_initializer`` with ``job.decoder_logs``."""
    if initializer is None:
        initializer = functools.partial(worker_initializer, job.decoder_logs)
    started = time.monotonic()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(job)
    remove_partials(job.out_dir)
    rows = len(job.entries)
    num_shards = math.ceil(rows / job.shard_size)
    bounds = [(k * job.shard_size, min(rows, (k + 1) * job.shard_size)) for k in range(num_shards)]
    reports = [read_report(job.out_dir, shard_name(job.prefix, k)) for k in range(num_shards)]
    todo = [k for k in range(num_shards) if reports[k] is None]
    for k in range(num_shards):  # finished by a run before shards had indexes: index them now (headers only)
        if reports[k] is not None:
            ensure_index(job.out_dir / shard_name(job.prefix, k))
    summary = ShardRunSummary(rows=rows, shards=num_shards, shards_reused=num_shards - len(todo))

    row_of_task = [i for k in todo for i in range(*bounds[k]) if job.entries[i].problem is None]
    tasks = (EncodeTask(i, job.entries[i].path, job.entries[i].label, job.entries[i].video_id, job.frames)
             for i in row_of_task)
    rows_done_before = sum(bounds[k][1] - bounds[k][0] for k in range(num_shards) if reports[k] is not None)
    bar = _Progress(rows, rows_done_before, progress)
    pool = IsolatedProcessPool(encode_fn, job.workers, job.timeout_s, initializer, job.mp_context) if row_of_task else None
    try:
        results = _OrderedResults(pool.run(tasks, job.max_ahead or 4 * job.workers + 4), row_of_task) if pool else None
        for k in todo:
            reports[k] = _write_shard(job, k, bounds[k], results, bar)
    finally:
        bar.close()
        if pool is not None:
            summary.workers_replaced = pool.replaced_workers
            pool.close()

    write_json_atomically(job.out_dir / MANIFEST_NAME, _manifest(job, reports))
    summary.samples = sum(r["samples"] for r in reports)
    summary.bytes = sum(r["bytes"] for r in reports)
    summary.skipped = [item for r in reports for item in r["skipped"]]
    summary.seconds = time.monotonic() - started
    return summary


def _manifest(job: ShardJob, reports: list[dict]) -> dict:
    skipped = [item for r in reports for item in r["skipped"]]
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dataset": job.dataset,
        "classes": list(job.classes),
        "num_classes": job.num_classes,
        "frame_settings": asdict(job.frames),
        "shard_size": job.shard_size,
        "source": job.source,
        "shards": [{"name": r["name"], "samples": r["samples"], "bytes": r["bytes"], "rows": r["rows"]}
                   for r in reports],
        "num_samples": sum(r["samples"] for r in reports),
        "num_videos_listed": len(job.entries),
        "skipped": skipped,
        "skipped_by_reason": dict(count_reasons(skipped)),
    }
