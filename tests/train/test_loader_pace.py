"""LoaderPace (vidprism_ds.train.loader_pace): says once, with the measured figures, when the step waits for data."""

import time

from vidprism_ds.data.collate import with_cpu_seconds
from vidprism_ds.train.loader_pace import MEASURED_BATCHES, WARM_UP_BATCHES, LoaderPace, timed


def _feed(pace, wait_s, step_s, cpu_s, clips=8, batches=WARM_UP_BATCHES + MEASURED_BATCHES):
    warnings = []
    for _ in range(batches):
        pace.add(wait_s, step_s, cpu_s, clips)
        warning = pace.check()
        if warning:
            warnings.append(warning)
    return warnings


def test_a_loader_bound_run_is_told_what_the_measured_cost_needs():
    pace = LoaderPace(workers=2, cores=4.0)
    # 8 clips a batch: the step takes 0.1 s (80 clips/s), the loader 0.4 CPU s (50 ms a clip): 4 cores' worth
    warnings = _feed(pace, wait_s=0.3, step_s=0.1, cpu_s=0.4)
    assert len(warnings) == 1  # once, not every batch
    assert warnings[0].startswith("warning: the step waited for batches 75% of the time")
    assert "50 ms of CPU a clip" in warnings[0] and "80.0 clips/s" in warnings[0]
    assert "needs 4.0 cores per process (4 loader workers); this one has 2 worker(s) and 4 core(s)" in warnings[0]
    assert "data.decode_device=cuda" in warnings[0]
    assert _feed(pace, 0.3, 0.1, 0.4) == []  # judged already


def test_a_loader_that_keeps_up_is_not_mentioned():
    assert _feed(LoaderPace(workers=8, cores=16.0), wait_s=0.001, step_s=0.1, cpu_s=0.4) == []


def test_nothing_is_judged_during_the_warm_up_or_without_cpu_figures():
    pace = LoaderPace(workers=2, cores=4.0)
    assert _feed(pace, 1.0, 0.1, 0.4, batches=WARM_UP_BATCHES + MEASURED_BATCHES - 1) == []
    assert _feed(LoaderPace(workers=2, cores=4.0), 1.0, 0.1, None) == []


def test_timed_gives_each_batch_the_wait_for_it():
    def slow():
        for index in range(3):
            time.sleep(0.02 * index)
            yield {"index": index}

    waits = [(batch["index"], wait) for batch, wait in timed(slow())]
    assert [index for index, _ in waits] == [0, 1, 2]
    assert waits[2][1] >= 0.04 > waits[0][1]


def test_with_cpu_seconds_counts_the_work_of_making_a_batch_not_the_consumers():
    def batches():
        for work in (0, 200_000):
            sum(range(work))  # CPU work inside the stage before this batch
            yield {"work": work}

    started = time.process_time()
    sum(range(200_000))
    alone = time.process_time() - started
    seen = []
    for batch in with_cpu_seconds(batches()):
        sum(range(400_000))  # the consumer's work (twice the batch's): not counted for the next batch
        seen.append(batch["cpu_seconds"])
    assert seen[0] < seen[1] < 2 * alone
