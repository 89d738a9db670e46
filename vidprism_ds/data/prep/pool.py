"""A process pool that survives its tasks: crashes and hangs fail one task, not the run.

Video decoders segfault on some damaged files and spin forever on others. ``concurrent.futures``
cannot attribute a dead worker to a task and breaks the whole pool when one dies, so this pool gives
each worker its own pipe and exactly one task at a time. The parent waits on every busy worker's pipe
and process sentinel:

- a reply -> the task's outcome (a Python exception inside the task is a failure with its message);
- the process ended without a reply -> the task failed with "crashed (SIGSEGV)" and a fresh worker
  takes the slot;
- no reply within ``timeout_s`` -> the worker is killed and replaced, the task failed with "timed out".

Outcomes come back in completion order; ``max_ahead`` bounds how far dispatch runs ahead of the oldest
unfinished task, so a consumer that restores list order buffers at most that many results.

Workers ignore SIGINT (the parent decides what Ctrl-C means) and exit when the parent's end of their
pipe closes, so killing the parent does not leave them behind.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator, Optional


@dataclass
class TaskOutcome:
    task_id: int  # position of the task in the input iterable
    value: Any = None
    failure: Optional[str] = None  # the reason when the task did not return a value

    @property
    def ok(self) -> bool:
        return self.failure is None


def _worker_loop(conn: Connection, fn: Callable[[Any], Any], initializer: Optional[Callable[[], None]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer()
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message is None:
            return
        task_id, argument = message
        try:
            reply = (task_id, None, fn(argument))
        except Exception as err:  # reported to the parent as this task's failure
            reply = (task_id, f"error: {type(err).__name__}: {err}", None)
        try:
            conn.send(reply)
        except (BrokenPipeError, ConnectionResetError):
            return


def describe_exit(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "ended without a reply"
    if exitcode < 0:
        try:
            return f"crashed ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"crashed (signal {-exitcode})"
    return f"exited with code {exitcode} without a reply"


class _Worker:
    def __init__(self, ctx, fn, initializer):
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_loop, args=(child_conn, fn, initializer), daemon=True)
        self.process.start()
        child_conn.close()  # only the child holds its end, so the child sees EOF when we go
        self.task_id: Optional[int] = None
        self.started_at = 0.0

    def assign(self, task_id: int, argument: Any) -> None:
        self.conn.send((task_id, argument))
        self.task_id, self.started_at = task_id, time.monotonic()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # already gone: nothing to stop
        self.process.join(timeout=5)
        self.kill()


class IsolatedProcessPool:
    def __init__(self, fn: Callable[[Any], Any], num_workers: int, timeout_s: float,
                 initializer: Optional[Callable[[], None]] = None, mp_context: str = "spawn"):
        if num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        self._ctx = multiprocessing.get_context(mp_context)
        self._fn, self._initializer, self._timeout_s = fn, initializer, timeout_s
        self._workers = [self._new_worker() for _ in range(num_workers)]
        self.replaced_workers = 0

    def _new_worker(self) -> _Worker:
        return _Worker(self._ctx, self._fn, self._initializer)

    def _replace(self, index: int) -> None:
        self._workers[index].kill()
        self._workers[index] = self._new_worker()
        self.replaced_workers += 1

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> "IsolatedProcessPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _collect(self, index: int, now: float) -> Optional[TaskOutcome]:
        """The outcome of busy worker ``index`` if it has one now (replacing the worker if it died)."""
        worker = self._workers[index]
        task_id = worker.task_id
        if worker.conn.poll():
            try:
                reply_id, failure, value = worker.conn.recv()
            except (EOFError, OSError):
                worker.process.join(timeout=5)
                reason = describe_exit(worker.process.exitcode)
                self._replace(index)
                return TaskOutcome(task_id, failure=reason)
            worker.task_id = None
            return TaskOutcome(reply_id, value=value, failure=failure)
        if not worker.process.is_alive():
            reason = describe_exit(worker.process.exitcode)
            self._replace(index)
            return TaskOutcome(task_id, failure=reason)
        if now - worker.started_at > self._timeout_s:
            self._replace(index)
            return TaskOutcome(task_id, failure=f"timed out after {self._timeout_s:g} s (worker killed)")
        return None

    def run(self, tasks: Iterable[Any], max_ahead: int) -> Iterator[TaskOutcome]:
        """Run every task; yield outcomes as they finish. Task ids are positions in ``tasks``."""
        pending = enumerate(tasks)
        waiting: Optional[tuple[int, Any]] = None  # pulled from ``pending`` but not yet dispatched
        exhausted = False
        unfinished: set[int] = set()
        while True:
            for index, worker in enumerate(self._workers):
                if worker.task_id is not None:
                    continue
                if not worker.process.is_alive():  # died between tasks
                    self._replace(index)
                    worker = self._workers[index]
                if waiting is None and not exhausted:
                    waiting = next(pending, None)
                    exhausted = waiting is None
                if waiting is None:
                    break
                oldest = min(unfinished) if unfinished else waiting[0]
                if waiting[0] - oldest >= max_ahead:
                    break
                worker.assign(*waiting)
                unfinished.add(waiting[0])
                waiting = None
            if not unfinished:
                return
            busy = [w for w in self._workers if w.task_id is not None]
            deadline = min(w.started_at for w in busy) + self._timeout_s
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                 timeout=max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            for index in range(len(self._workers)):
                if self._workers[index].task_id is None:
                    continue
                outcome = self._collect(index, now)
                if outcome is not None:
                    unfinished.discard(outcome.task_id)
                    yield outcome
