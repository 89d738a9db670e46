"""Reading WebDataset shards lazily: headers while streaming, member data only when asked for.

A sample holds 64 JPEG frames but a training clip decodes 8 (or 32) of them. Streaming tar readers
(``webdataset.tarfile_to_samples``) copy every member into memory; here the shard is opened for random
access (``tarfile`` mode ``r:``), iteration parses headers only, and each member is a ``TarMember`` whose
bytes are read when the clip builder picks that frame. That reads about 8/64 of the data, and a shuffle
buffer of 256 samples holds 256 small header lists instead of hundreds of megabytes of JPEG bytes.
This is why the loaders do not use webdataset's reader: measured with ``bench/data.py``, streaming every
member through ``tarfile_to_samples`` was part of the slower design (4.2x on-the-fly decoding at T = 8,
against 5.3x now; docs/benchmarks.md, "Data"). Evaluation streams its shard ranges with this reader;
training reads each sample where it lies through the shard's member index instead (``train_source``,
``shard_index``: no header is parsed on the way).

Shards must therefore be seekable files (local disk or a network file system), not HTTP/S3 streams.
A shard's file stays open while any of its samples is alive (it closes when they are garbage
collected); a shuffle buffer keeps at most a few shards open at a time.

Samples are grouped like WebDataset does: the key is the member name up to its first dot, the
extension is the rest (``000000042.000003.jpg`` -> key ``000000042``, extension ``000003.jpg``).

Damage (``vidprism_ds.data.damage``). A shard that is not a tar at all gives one marker for all its
samples. A truncated shard: Python's ``tarfile`` raises when it steps past a member whose data is cut
short, which ends the shard; the sample being assembled (the one holding that member) becomes a marker.
When the manifest's sample count is given, a shard that yields fewer samples (it can also end silently,
cut at a header) gives a last marker for the missing ones. A member read later (``TarMember.read``)
raises ``tarfile.ReadError`` when its own data is cut short; the stage that reads it makes the marker.
"""

from __future__ import annotations

import os
import tarfile
from typing import Iterator, Optional

from vidprism_ds.data.damage import damage_marker


class TarMember:
    """One member of an open shard; ``read()`` returns its bytes."""

    __slots__ = ("_tar", "_info")

    def __init__(self, tar: tarfile.TarFile, info: tarfile.TarInfo):
        self._tar, self._info = tar, info

    @property
    def size(self) -> int:
        return self._info.size

    @property
    def name(self) -> str:
        return self._info.name

    def read(self) -> bytes:
        return self._tar.extractfile(self._info).read()


def shard_samples(path: str, expected: Optional[int] = None) -> Iterator[dict]:
    """Samples of one shard in file order: {"__key__", "__url__", extension: TarMember, ...}, and damage
    markers where the shard is damaged; ``expected`` = the manifest's sample count for the shard."""
    try:
        tar = tarfile.open(path, mode="r:")
    except tarfile.ReadError as err:  # empty, not a tar, or cut inside the first header
        yield damage_marker({"__url__": path}, f"not a readable tar file ({err})", lost=max(1, expected or 0))
        return
    produced = 0
    for sample in _grouped_members(tar, path):
        produced += 1
        yield sample
    if expected is not None and produced < expected:
        yield damage_marker({"__url__": path}, f"{expected - produced} of the manifest's {expected} samples are "
                                               "missing: the shard ends early (truncated?)", lost=expected - produced)


def _grouped_members(tar: tarfile.TarFile, path: str) -> Iterator[dict]:
    key, members = None, {}
    try:
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
    except tarfile.ReadError as err:
        # raised on stepping past a member whose data is cut short: that member is the last one of the
        # sample being assembled, and nothing after it can be reached
        last = f"member {next(reversed(members.values())).name}" if members else "the last header"
        yield damage_marker({"__key__": key, "__url__": path}, f"truncated tar: {last} is cut short ({err})")
        return
    if members:
        yield {"__key__": key, "__url__": path, **members}
