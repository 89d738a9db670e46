"""Writing a generated video dataset to disk: the part ``synthetic`` and ``heldout_temporal`` share.

A generator module describes its dataset in a ``GeneratedDataset`` (class names, how to render video k
of a split and where to put it, defaults, command-line limits); this module encodes the videos
(``write_video``: PyAV, single-threaded, so a file's bytes depend on the seed alone), writes
``DIR/train.txt`` and ``DIR/val.txt`` (``relative/path label``, relative to DIR) and ``DIR/labels.txt``,
and runs the command line both generators share.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

CONTAINER_OF_CODEC = {"libx264": ".mp4", "h264": ".mp4", "mpeg4": ".avi", "libvpx-vp9": ".webm", "libvpx": ".webm"}
DEFAULT_CODEC = "libx264"
DEFAULT_FPS = 8


def write_video(path: str | Path, frames_nhwc: np.ndarray, fps: int = DEFAULT_FPS, codec: str = DEFAULT_CODEC,
                pix_fmt: str = "yuv420p", options: dict | None = None) -> None:
    """Encode uint8 RGB frames into a real video file with PyAV (single-threaded: deterministic)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames_nhwc.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.thread_count = 1
        default_options = {"crf": "18", "preset": "veryfast"} if codec in ("libx264", "h264") else {}
        stream.options = {**default_options, **(options or {})}
        for frame_hw3 in frames_nhwc:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_hw3), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_list(path: Path, rows: Sequence[tuple[str, int]]) -> None:
    path.write_text("".join(f"{rel} {label}\n" for rel, label in rows), encoding="utf-8")


@dataclass(frozen=True)
class GeneratedDataset:
    """A generator module's part (class names, how video k of a split is rendered and where it goes) and
    its defaults and command-line limits; ``make_dataset`` and ``main`` are the module's entry points."""

    prog: str  # "python -m vidprism_ds.data.<module>"
    description: str
    class_names: tuple[str, ...]
    # (seed key, class id, size, frames) -> (N, H, W, 3) uint8; the key is (seed, split, k)
    render_video: Callable[[tuple, int, int, int], np.ndarray]
    # a video's path relative to the dataset folder, from split, k, class_folder (the class name with "_" for
    # spaces) and extension (the codec's container)
    video_path: str
    train_per_class: int  # defaults of make_dataset and the command line
    val_per_class: int
    size: int
    frames: int
    min_frames: int
    even_frames: bool  # the frame count must be even
    codec_option: bool  # the command line offers --codec (else every video is h264 in .mp4)
    # frame rate of the written files when none is given; a dataset whose events have a rate in Hz (the
    # frequency benchmark) sets its own
    fps: int = DEFAULT_FPS

    def make_dataset(self, out_dir: str | Path, train_per_class: Optional[int] = None,
                     val_per_class: Optional[int] = None, size: Optional[int] = None, num_frames: Optional[int] = None,
                     fps: Optional[int] = None, seed: int = 0, codec: str = DEFAULT_CODEC) -> dict[str, Path]:
        """Both splits, their lists and labels.txt; returns {"labels", "train", "val"} paths. A count, size
        or frame rate left None is this dataset's default."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"labels": out_dir / "labels.txt"}
        paths["labels"].write_text("".join(f"{name}\n" for name in self.class_names), encoding="utf-8")
        size = self.size if size is None else size
        num_frames = self.frames if num_frames is None else num_frames
        fps = self.fps if fps is None else fps
        per_split = {"train": self.train_per_class if train_per_class is None else train_per_class,
                     "val": self.val_per_class if val_per_class is None else val_per_class}
        for split, per_class in per_split.items():
            paths[split] = out_dir / f"{split}.txt"
            write_list(paths[split], make_split(self, out_dir, split, per_class, size, num_frames, fps, seed, codec))
        return paths

    def main(self, argv: Optional[Sequence[str]] = None) -> int:
        """The command line: check the arguments, write the dataset, say what was written."""
        parser = _parser(self)
        args = parser.parse_args(argv)
        if args.size < 16 or args.size % 2:
            parser.error("--size must be an even number >= 16")
        if args.frames < self.min_frames or (self.even_frames and args.frames % 2):
            parser.error(f"--frames must be {'an even number ' if self.even_frames else ''}>= {self.min_frames}")
        if args.train_per_class < 0 or args.val_per_class < 0 or args.fps < 1:
            parser.error("--train-per-class/--val-per-class must be >= 0 and --fps >= 1")
        paths = self.make_dataset(args.out, args.train_per_class, args.val_per_class, args.size, args.frames,
                                  args.fps, args.seed, args.codec if self.codec_option else DEFAULT_CODEC)
        num_classes = len(self.class_names)
        print(f"wrote {args.train_per_class * num_classes} train and {args.val_per_class * num_classes} val videos; "
              f"lists: {paths['train']}, {paths['val']}; labels: {paths['labels']}")
        return 0


def make_split(dataset: GeneratedDataset, out_dir: Path, split: str, per_class: int, size: int, num_frames: int,
               fps: int, seed: int, codec: str = DEFAULT_CODEC) -> list[tuple[str, int]]:
    """Render and encode one split (video k has class k mod classes); (path relative to out_dir, label) rows."""
    extension = CONTAINER_OF_CODEC.get(codec, ".mp4")
    num_classes = len(dataset.class_names)
    rows = []
    for k in range(per_class * num_classes):
        class_id = k % num_classes
        class_folder = dataset.class_names[class_id].replace(" ", "_")
        rel = dataset.video_path.format(split=split, k=k, class_folder=class_folder, extension=extension)
        write_video(out_dir / rel, dataset.render_video((seed, split, k), class_id, size, num_frames), fps=fps,
                    codec=codec)
        rows.append((rel, class_id))
    return rows


def _parser(dataset: GeneratedDataset) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=dataset.prog, description=dataset.description)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train-per-class", type=int, default=dataset.train_per_class)
    parser.add_argument("--val-per-class", type=int, default=dataset.val_per_class)
    parser.add_argument("--size", type=int, default=dataset.size, help="frame width = height (even)")
    even = "even, " if dataset.even_frames else ""
    parser.add_argument("--frames", type=int, default=dataset.frames,
                        help=f"frames per video ({even}>= {dataset.min_frames})")
    parser.add_argument("--fps", type=int, default=dataset.fps)
    parser.add_argument("--seed", type=int, default=0)
    if dataset.codec_option:
        parser.add_argument("--codec", default=DEFAULT_CODEC, choices=sorted(CONTAINER_OF_CODEC))
    return parser
