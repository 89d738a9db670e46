import io

from tqdm import tqdm

from vidprism_ds.utils.progress import LineProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_file_gets_periodic_plain_lines_and_a_last_one():
    log, clock = io.StringIO(), Clock()
    bar = LineProgress(total=10, desc="eval", unit="batch", stream=log, interval_s=30.0, clock=clock)
    for _ in range(10):
        clock.now += 10.0  # one line every third batch
        bar.update(1)
    bar.set_postfix(skipped=2)
    bar.close()
    bar.close()  # a second close writes nothing
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" batch")[0] for line in lines] == ["eval: 3/10", "eval: 6/10", "eval: 9/10", "eval: 10/10"]
    assert lines[-1] == "eval: 10/10 batch (100%), 1:40 elapsed, 0.10 batch/s, skipped=2"


def test_progress_bar_picks_plain_lines_off_a_terminal_and_tqdm_on_one():
    log = io.StringIO()
    batches = list(progress_bar(range(3), total=3, desc="eval", unit="batch", stream=log))
    assert batches == [0, 1, 2]
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval: 3/3 batch (100%), 0:00 elapsed")  # quicker than 30 s
    assert "\r" not in log.getvalue()

    terminal = Terminal()
    bar = progress_bar(total=3, desc="eval", stream=terminal)
    assert isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in terminal.getvalue()


def test_a_disabled_bar_writes_nothing_anywhere():
    for stream in (io.StringIO(), Terminal()):
        bar = progress_bar(total=5, stream=stream, disable=True)
        bar.update(5)
        bar.set_postfix(skipped=1, refresh=False)
        bar.close()
        assert stream.getvalue() == ""


def test_resuming_counts_rate_from_the_new_work_only():
    log, clock = io.StringIO(), Clock()
    bar = LineProgress(total=100, initial=90, unit="video", stream=log, clock=clock)
    clock.now = 5.0
    bar.update(10)
    bar.close()
    assert log.getvalue() == "100/100 video (100%), 0:05 elapsed, 2.00 video/s\n"
