"""JPEG frame members: read a member's bytes and decode the picked frames on the CPU (the worker's path;
``device_decode`` ships the bytes instead and decodes them on the model's device). Both paths check a
member's bytes with ``check_jpeg_markers`` first: libjpeg decodes a file cut short without an error,
greying out what is missing, so that check is what names such a frame."""

from __future__ import annotations

import re
import tarfile
from typing import Sequence

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from vidprism_ds.data.damage import DamagedSample
from vidprism_ds.data.tar_reader import TarMember


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def check_jpeg_markers(name: str, data: bytes) -> None:
    """A JPEG file starts with the SOI marker and ends with EOI (trailing zero padding allowed); a cut-short
    or overwritten frame does not. ``DamagedSample`` naming the member otherwise."""
    if not data.startswith(JPEG_START):
        raise DamagedSample(f"{name}: not a JPEG file (no start marker)")
    if not data.rstrip(b"\x00").endswith(JPEG_END):
        raise DamagedSample(f"{name}: JPEG file cut short (no end marker)")


def read_member(member: TarMember) -> bytes:
    """A member's bytes; ``DamagedSample`` when the tar cuts them short."""
    try:
        return member.read()
    except tarfile.TarError as err:
        raise DamagedSample(f"{member.name}: {err}") from None


def decoder_message(err: RuntimeError) -> str:
    """torchvision's decode error without its C++ source location ("decode_jpeg, /…/decode_jpeg.cpp:171, ")."""
    return re.sub(r"^.*?\.cpp:\d+, ", "", str(err).splitlines()[0])


def decode_frame(member: TarMember) -> torch.Tensor:
    """uint8 (3, H, W) from one JPEG member; ``DamagedSample`` naming the member when it does not decode."""
    data = read_member(member)
    if not data:
        raise DamagedSample(f"{member.name}: empty JPEG")
    check_jpeg_markers(member.name, data)
    try:
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as err:  # torchvision reports libjpeg errors as RuntimeError
        raise DamagedSample(f"{member.name}: corrupt JPEG ({decoder_message(err)})") from None


def decode_jpegs(frames_jpeg: Sequence[TarMember], picks: Sequence[int]) -> torch.Tensor:
    """uint8 (len(picks), 3, H, W): read and decode only the picked frames, each distinct one once.
    ``DamagedSample`` when a frame does not read or decode, or the frames differ in size."""
    distinct = sorted(set(picks))
    frames = [decode_frame(frames_jpeg[p]) for p in distinct]
    if len({frame.shape for frame in frames}) > 1:
        raise DamagedSample(f"frames of different sizes: {sorted({tuple(f.shape[1:]) for f in frames})}")
    decoded = torch.stack(frames)
    if list(picks) == distinct:  # a segment or dense clip of distinct frames: already in pick order
        return decoded
    position = {p: i for i, p in enumerate(distinct)}
    return decoded[[position[p] for p in picks]]
