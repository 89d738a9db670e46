"""Writing files so that a kill or a full disk never leaves a torn file under the final name.

``atomic_file(path)`` yields a handle on a temporary file in the same folder, unique to the call (several
processes may write the same path at once); on success the data are flushed and fsync'ed, the temporary is
renamed over ``path`` and the folder is fsync'ed; on any failure the temporary is removed and the old
``path`` (if any) is untouched. A write that fails for lack of space raises ``OutOfSpaceError`` naming the
path, whatever layer noticed it (``OSError(ENOSPC)`` from Python, or torch's zip writer's
``RuntimeError: [enforce fail at inline_container.cc] ... unexpected pos``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Iterator

# what torch's serializer says when the OS refused a write (it loses the errno)
_TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed writing", "inline_container.cc")


class OutOfSpaceError(OSError):
    """A write failed because the filesystem is full; the message names the path and the free space."""


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _free_bytes(path: Path) -> int:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return -1


def is_out_of_space(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, RuntimeError) and any(s in str(error) for s in _TORCH_WRITE_FAILURES)


def out_of_space(path: Path, error: BaseException) -> OutOfSpaceError:
    free = _free_bytes(Path(path))
    where = f"{free / 2 ** 20:.1f} MiB free" if free >= 0 else "free space unknown"
    return OutOfSpaceError(errno.ENOSPC, f"no space left on the device holding {path} ({where}; {error})")


@contextlib.contextmanager
def translate_out_of_space(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a failed write caused by a full disk as ``OutOfSpaceError`` naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if is_out_of_space(error) and not isinstance(error, OutOfSpaceError):
            raise out_of_space(Path(path), error) from error
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        with translate_out_of_space(path):
            with open(partial, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
            fsync_directory(path.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    import torch  # here: the shard writer's processes use this module without torch

    with atomic_file(path) as handle:
        torch.save(obj, handle)
