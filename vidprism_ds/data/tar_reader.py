"""Reading WebDataset shards lazily: headers while streaming, member data only when asked for.

A sample holds 64 JPEG frames but a training clip decodes 8 (or 32) of them. Streaming tar readers
(``webdataset.tarfile_to_samples``) copy every member into memory; here the shard is opened for random
access (``tarfile`` mode ``r:``), iteration parses headers only, and each member is a ``TarMember`` whose
bytes are read when the clip builder picks that frame. That reads about 8/64 of the data, and a shuffle
buffer of 256 samples holds 256 small header lists instead of hundreds of megabytes of JPEG bytes.

Shards must therefore be seekable files (local disk or a network file system), not HTTP/S3 streams.
A shard's file stays open while any of its samples is alive (it closes when they are garbage
collected); a shuffle buffer keeps at most a few shards open at a time.

Samples are grouped like WebDataset does: the key is the member name up to its first dot, the
extension is the rest (``000000042.000003.jpg`` -> key ``000000042``, extension ``000003.jpg``).
"""

from __future__ import annotations

import os
import tarfile
from typing import Iterator


class TarMember:
    """One member of an open shard; ``read()`` returns its bytes."""

    __slots__ = ("_tar", "_info")

    def __init__(self, tar: tarfile.TarFile, info: tarfile.TarInfo):
        self._tar, self._info = tar, info

    @property
    def size(self) -> int:
        return self._info.size

    def read(self) -> bytes:
        return self._tar.extractfile(self._info).read()


def shard_samples(path: str) -> Iterator[dict]:
    """Samples of one shard in file order: {"__key__", "__url__", extension: TarMember, ...}."""
    tar = tarfile.open(path, mode="r:")
    key, members = None, {}
    for info in tar:
        if not info.isreg():
            continue
        sample_key, dot, extension = os.path.basename(info.name).partition(".")
        if not dot:
            continue
        if sample_key != key:
            if members:
                yield {"__key__": key, "__url__": path, **members}
            key, members = sample_key, {}
        members[extension] = TarMember(tar, info)
    if members:
        yield {"__key__": key, "__url__": path, **members}
