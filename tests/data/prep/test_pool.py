"""Crash and hang isolation: one bad task fails alone, the pool replaces the worker and goes on."""

import faulthandler
import os
import signal
import time

import pytest

from vidprism_ds.data.prep.pool import IsolatedProcessPool, describe_exit


def _task(kind):
    if kind == "segfault":
        faulthandler.disable()  # pytest's handler would print a traceback for the intended crash
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(600)
    if kind == "exit":
        os._exit(3)
    if kind == "raise":
        raise ValueError("bad input")
    return kind * 2


@pytest.mark.slow
def test_crashes_hangs_and_errors_fail_only_their_task():
    tasks = ["a", "segfault", "b", "hang", "c", "exit", "raise", "d"]
    # fork: the task function lives in this test module, which spawned children could not import
    with IsolatedProcessPool(_task, num_workers=2, timeout_s=1.5, mp_context="fork") as pool:
        outcomes = {o.task_id: o for o in pool.run(tasks, max_ahead=8)}
        replaced = pool.replaced_workers
    assert sorted(outcomes) == list(range(len(tasks)))
    assert [outcomes[i].value for i in (0, 2, 4, 7)] == ["aa", "bb", "cc", "dd"]
    assert outcomes[1].failure == "crashed (SIGSEGV)"
    assert outcomes[3].failure.startswith("timed out after 1.5 s")
    assert outcomes[5].failure == "exited with code 3 without a reply"
    assert outcomes[6].failure == "error: ValueError: bad input"
    assert replaced == 3  # segfault, hang, exit


def test_dispatch_never_runs_further_ahead_than_max_ahead():
    started = []

    def tasks():
        for i in range(12):
            started.append(i)
            yield "x"

    with IsolatedProcessPool(_task, num_workers=2, timeout_s=30, mp_context="fork") as pool:
        for outcome in pool.run(tasks(), max_ahead=3):
            # when task k finishes, no task beyond (oldest unfinished) + 3 has been pulled
            assert max(started) <= outcome.task_id + 3
    assert started == list(range(12))


def test_describe_exit():
    assert describe_exit(-signal.SIGKILL) == "crashed (SIGKILL)"
    assert describe_exit(1) == "exited with code 1 without a reply"
