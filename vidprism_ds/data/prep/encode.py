"""One video -> one WebDataset sample of JPEG frames (runs inside a sharder worker process).

Sample layout (key = the video's position in the list, 9 digits, so keys are unique and sort in list
order; WebDataset splits a member name at the key's first dot):

- ``{key}.000000.jpg`` ... ``{key}.{n-1:06d}.jpg``: the kept frames in time order, RGB JPEG, short side
  resized to ``short_side`` (never enlarged): the sparse base and the dense bursts
  (``vidprism_ds.data.sampling.stored_frames``), a frame in both stored once;
- ``{key}.json``: metadata (``label``, ``video_id``, ``source_fps``, ``source_num_frames``,
  ``frame_indices`` = source index of each kept frame, ``frame_times`` = its seconds from the video's
  start, ``base_frames`` and ``bursts`` = which kept frames (positions) form the base and each burst,
  ``num_frames``, ``width``, ``height``, ...);
- ``{key}.cls``: the label as ASCII digits.

Only these three kinds of member are ever written (no pickles, no numpy files).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from typing import Union

import numpy as np
from PIL import Image

from vidprism_ds.data.sampling import FrameSettings, StoredFrames, burst_frame_indices, frame_times, stored_frames
from vidprism_ds.data.video_decode import (DecodedVideo, VideoDecodeError, decode_base_frames, open_video, read_frames,
                                          symlink_problem)

FRAME_MEMBER_DIGITS = 6


@dataclass(frozen=True)
class EncodeTask:
    index: int
    path: str
    label: int
    video_id: str
    settings: FrameSettings


@dataclass
class EncodedSample:
    index: int
    members: dict[str, bytes]  # member extension ("000000.jpg", "json", "cls") -> bytes
    num_frames: int


@dataclass
class SkippedVideo:
    index: int
    reason: str


def sample_key(index: int) -> str:
    return f"{index:09d}"


def frame_member(position: int) -> str:
    return f"{position:0{FRAME_MEMBER_DIGITS}d}.jpg"


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    short = min(width, height)
    if short <= short_side:
        return width, height
    scale = short_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_jpeg(frame_hw3: np.ndarray, size: tuple[int, int], quality: int) -> bytes:
    image = Image.fromarray(frame_hw3, mode="RGB")
    if image.size != size:
        image = image.resize(size, Image.BILINEAR, reducing_gap=3.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_video(task: EncodeTask) -> Union[EncodedSample, SkippedVideo]:
    settings = task.settings
    link_problem = symlink_problem(task.path)
    if link_problem is not None:
        return SkippedVideo(task.index, link_problem)
    try:
        decoded = decode_base_frames(task.path, settings.max_frames, settings.target_fps)
        stored, frames_nhwc = add_burst_frames(task.path, decoded, settings)
    except VideoDecodeError as err:
        return SkippedVideo(task.index, str(err))
    height, width = frames_nhwc.shape[1:3]
    size = resized_size(width, height, settings.short_side)
    members = {frame_member(i): encode_jpeg(frame, size, settings.jpeg_quality)
               for i, frame in enumerate(frames_nhwc)}
    metadata = {
        "index": task.index,
        "label": task.label,
        "video_id": task.video_id,
        "source_fps": decoded.source_fps,
        "source_num_frames": decoded.source_num_frames,
        "source_width": width,
        "source_height": height,
        "frame_indices": stored.indices,
        "frame_times": frame_times(stored.indices, decoded.source_fps),
        "base_frames": stored.base,
        "bursts": stored.bursts,
        "num_frames": len(stored.indices),
        "width": size[0],
        "height": size[1],
        "frame_settings": asdict(settings),
    }
    members["json"] = json.dumps(metadata, sort_keys=True).encode("utf-8")
    members["cls"] = str(task.label).encode("ascii")
    return EncodedSample(task.index, members, len(stored.indices))


def add_burst_frames(path: str, decoded: DecodedVideo, settings: FrameSettings) -> tuple[StoredFrames, np.ndarray]:
    """The stored frames: the decoded base plus the bursts' frames it lacks, (N, H, W, 3) in time order.

    The base is decoded exactly as in a single-base shard (``decode_base_frames``, with its fallback to
    the decodable prefix of a damaged file); the bursts are placed within the frames it found decodable
    and read in a second pass, so a burst frame that does not decode skips the video with the reason."""
    bursts = burst_frame_indices(decoded.source_num_frames, decoded.source_fps, settings.burst_count,
                                 settings.burst_length, settings.burst_fps)
    stored = stored_frames(decoded.frame_indices, bursts)
    in_base = set(decoded.frame_indices)
    missing = [index for index in stored.indices if index not in in_base]
    if not missing:
        return stored, decoded.frames_nhwc
    try:
        extra = read_frames(open_video(path), missing)
    except VideoDecodeError as err:
        raise VideoDecodeError(f"burst frames: {err}") from None
    by_index = dict(zip(decoded.frame_indices, decoded.frames_nhwc))
    by_index.update(zip(missing, extra))
    return stored, np.stack([by_index[index] for index in stored.indices])


def worker_initializer(decoder_logs: bool = False) -> None:
    """Runs once in each decoder process. Unless ``decoder_logs``, the decoder's own messages (decord
    prints one "ERROR opening ..." per bad file straight to file descriptor 2) go to /dev/null: every
    failure is already recorded with its reason, and the progress bar stays readable."""
    from vidprism_ds.data.video_decode import silence_decoder_logs

    silence_decoder_logs()
    if not decoder_logs:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
