"""Progress bars that suit where their output goes.

On a terminal: a tqdm bar. Anywhere else (a log file of ``sbatch``, CI, ``> log 2>&1``, a pipe): a
plain line every ``interval_s`` seconds and one at the end, because a bar redraws itself with carriage
returns, which a log file keeps as one long line of every intermediate state.

``progress_bar`` returns an object with the part of tqdm's interface this project uses: ``update(n)``,
``set_postfix(**values)``, ``close()``, iteration when it wraps an iterable, and ``with``; a disabled bar
is tqdm's (silent).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Optional, TextIO

# Often enough to show a long evaluation or sharding run is alive, rarely enough to keep logs short.
LINE_INTERVAL_S = 30.0


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LineProgress:
    """tqdm's interface, written as a plain line every ``interval_s`` seconds and a last one at ``close``:

    ``eval: 12/40 batch (30%), 0:31 elapsed, 0.39 batch/s, skipped=2``
    """

    def __init__(self, iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", initial: int = 0, stream: Optional[TextIO] = None,
                 interval_s: float = LINE_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.n, self.initial = desc, unit, initial, initial
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s, self.clock = interval_s, clock
        self.postfix: dict = {}
        self.started = self.last_line = clock()
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last_line >= self.interval_s:
            self._write()

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix.update(values)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write()

    def line(self) -> str:
        elapsed = self.clock() - self.started
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{done} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{_duration(elapsed)} elapsed")
        if elapsed > 0 and self.n > self.initial:
            parts.append(f"{(self.n - self.initial) / elapsed:.2f} {self.unit}/s")
        parts += [f"{key}={value}" for key, value in self.postfix.items()]
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def _write(self) -> None:
        self.last_line = self.clock()
        print(self.line(), file=self.stream, flush=True)


def progress_bar(iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "", unit: str = "it",
                 initial: int = 0, disable: bool = False, stream: Optional[TextIO] = None,
                 interval_s: float = LINE_INTERVAL_S, leave: bool = True):
    """A tqdm bar on ``stream`` (default stderr) when it is a terminal, else a ``LineProgress``.

    ``leave`` (terminal only) keeps the finished bar on screen."""
    stream = stream if stream is not None else sys.stderr
    if not disable and not is_terminal(stream):
        return LineProgress(iterable, total, desc, unit, initial, stream, interval_s)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc or None, unit=unit, initial=initial, file=stream,
                disable=disable, dynamic_ncols=True, smoothing=0.1, leave=leave)
