"""Decoding frames from video files with decord, with failures turned into short reasons.

Used by the sharder (in isolated worker processes, see ``vidprism_ds.data.prep.pool``) and by the raw
loader. Errors a bad file can cause in Python come out as ``VideoDecodeError`` with a one-line reason;
crashes and hangs inside the decoder cannot be caught here, which is why the sharder runs this in
processes it can replace.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from vidprism_ds.data.sampling import base_frame_indices


class VideoDecodeError(RuntimeError):
    """A video that cannot be decoded; ``str(err)`` is the reason recorded in the manifest."""


@dataclass
class OpenedVideo:
    reader: object  # decord.VideoReader
    num_frames: int  # as the container reports it; may be more than can be decoded
    fps: float


def silence_decoder_logs() -> None:
    """FFmpeg inside decord prints a warning per damaged packet; the reasons we record are enough."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)


_DECORD_LOCATION = re.compile(r"^\[[0-9:]+\] \S+:\d+: ")


def _short_reason(err: BaseException) -> str:
    # decord errors carry a multi-line C++ stack trace; the first line says what happened
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    # drop decord's "[12:00:00] /src/video/video_reader.cc:151: " location prefix
    return _DECORD_LOCATION.sub("", text)[:200]


SYMLINK_LOOP = "symlink loop (too many levels of symbolic links)"
BROKEN_SYMLINK = "broken symlink (its target does not exist)"


def symlink_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be opened when a symbolic link is to blame, else None.

    ``os.path.exists`` is false both for a link loop and for a link to nothing, and both came out as
    "missing file", which sends people looking for a file that is there.
    """
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return SYMLINK_LOOP
        if err.errno == errno.ENOENT and os.path.islink(path):
            return BROKEN_SYMLINK
    return None  # not a link problem: the checks below say what is wrong, if anything


def open_video(path: str) -> OpenedVideo:
    import decord

    link_problem = symlink_problem(path)  # the sharder and the raw-video loaders alike
    if link_problem is not None:
        raise VideoDecodeError(link_problem)
    if not os.path.exists(path):
        raise VideoDecodeError("missing file")
    if not os.path.isfile(path):
        raise VideoDecodeError("not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError("empty file")
    try:
        reader = decord.VideoReader(path, num_threads=1)
    except (decord.DECORDError, RuntimeError) as err:
        reason = _short_reason(err)
        if "cannot find video stream" in reason:
            raise VideoDecodeError("no video stream (audio-only or data file)") from None
        raise VideoDecodeError(f"cannot open as video: {reason}") from None
    num_frames = len(reader)
    if num_frames <= 0:
        raise VideoDecodeError("no video frames")
    fps = float(reader.get_avg_fps())
    if not np.isfinite(fps) or fps <= 0:
        fps = 0.0  # unknown; recorded as such
    return OpenedVideo(reader=reader, num_frames=num_frames, fps=fps)


def _count_decodable_frames(reader) -> int:
    """Decode sequentially until the first failure (damaged or truncated files)."""
    import decord

    reader.seek(0)
    count = 0
    while True:
        try:
            reader.next()
        except (decord.DECORDError, RuntimeError, StopIteration):
            return count
        count += 1


def read_frames(video: OpenedVideo, indices: Sequence[int]) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames at ``indices`` (ascending)."""
    import decord

    try:
        return video.reader.get_batch(list(indices)).asnumpy()
    except (decord.DECORDError, RuntimeError) as err:
        raise VideoDecodeError(f"decode failed: {_short_reason(err)}") from None


@dataclass
class DecodedVideo:
    frames_nhwc: np.ndarray  # uint8 RGB
    frame_indices: list[int]  # source frame index of each kept frame
    source_fps: float
    source_num_frames: int  # frames the decoder could actually deliver


def decode_base_frames(path: str, max_frames: int, target_fps: float = 0.0) -> DecodedVideo:
    """The dense base of ``path`` (see ``sampling.base_frame_indices``).

    When the container claims more frames than can be decoded (truncated or damaged files), the
    decodable prefix is counted sequentially and the base is chosen from that prefix instead.
    """
    video = open_video(path)
    num_frames = video.num_frames
    indices = base_frame_indices(num_frames, video.fps, max_frames, target_fps)
    try:
        frames = read_frames(video, indices)
    except VideoDecodeError:
        num_frames = _count_decodable_frames(video.reader)
        if num_frames == 0:
            raise VideoDecodeError("no decodable video frames") from None
        indices = base_frame_indices(num_frames, video.fps, max_frames, target_fps)
        frames = read_frames(video, indices)
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise VideoDecodeError(f"decoder returned frames of shape {frames.shape} for {len(indices)} indices")
    return DecodedVideo(frames_nhwc=frames, frame_indices=indices, source_fps=video.fps, source_num_frames=num_frames)
