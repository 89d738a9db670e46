"""Library output that does not apply to this run, filtered here and only here (docs/training.md, "Expected
lines", lists each filter and why; the lines that stay are listed there too).

``quiet_libraries`` installs the filters once per process; ``train.py`` (``vidprism_ds.train.cli``) calls it
before DeepSpeed, megatron-core or torch's extension loader is imported. ``dropping_stdout_lines`` is for
the one library line that is a bare ``print`` (DeepSpeed's shared-memory op), around the call that prints
it (``vidprism_ds.train.distributed.init_distributed``). Each filter matches one message exactly, so any
other warning of the same libraries still shows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from typing import Iterator

# Python warnings: (message regex, matched at the message's start, category, why it does not apply)
WARNING_FILTERS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"Transformer Engine and Apex are not installed", Warning,
     "megatron-core (imported only with parallel.tp_size > 1) says it falls back to torch's optimizers and "
     "gradient clipping; DeepSpeed's are the ones used"),
    (r"`?torch\.distributed\.all_gather_into_tensor`? is deprecated", FutureWarning,
     "DeepSpeed's ZeRO-1/2 step calls torch's deprecated all-gather; nothing in the run can change it"),
)

# logging records, on CPU runs only: (logger, message regex, why)
CPU_LOG_FILTERS: tuple[tuple[str, str, str], ...] = (
    ("torch.utils.cpp_extension", r"No CUDA runtime is found",
     "torch's extension loader, as DeepSpeed loads its CPU collectives: a CPU run needs no CUDA runtime"),
)

# bare prints of the training processes: (regex, why)
STDOUT_FILTERS: tuple[tuple[str, str], ...] = (
    (r"^DeepSpeed deepspeed\.ops\.comm\.\w+ built successfully$",
     "DeepSpeed's shared-memory collectives for CPU processes, loaded (or compiled once) at every start"),
)


class _DropMessages(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_libraries(on_gpu: bool) -> None:
    """Install the warning and logging filters (idempotent)."""
    for message, category, _ in WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=message, category=category)
    if on_gpu:
        return
    for name, message, _ in CPU_LOG_FILTERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and f.pattern.pattern == message for f in logger.filters):
            logger.addFilter(_DropMessages(message))


@contextlib.contextmanager
def dropping_stdout_lines() -> Iterator[None]:
    """Hold back what is printed inside, then print it without the lines ``STDOUT_FILTERS`` match."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        patterns = [re.compile(pattern) for pattern, _ in STDOUT_FILTERS]
        kept = [line for line in captured.getvalue().splitlines(keepends=True)
                if not any(p.search(line.rstrip("\n")) for p in patterns)]
        if kept:
            sys.stdout.write("".join(kept))
            sys.stdout.flush()
