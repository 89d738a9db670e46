"""Issue 29's direct checks on a ``frequency_pairs`` data folder (docs/results.md, "Why multirate clips did
not separate the blink periods")::

    python -m vidprism_ds.analysis.burst_checks --data DIR [--export EXPORT.pt] [--fresh]

``DIR`` is a folder ``bench/temporal.py --frequency-pairs --work W`` prepared (``W/frequency_pairs_*``:
``labels.txt``, ``val.txt``, ``shards-train``, ``shards-val``). Without ``--export`` it checks the clips:
every multirate training clip and evaluation view must end in 16 consecutive source frames (1/25 s apart)
after a segment part in time order, for videos whose base holds every frame (<= 64 frames) and for longer
ones, in batches mixing video lengths. With ``--export`` (a multirate model that ``bench/temporal.py``
exported) it probes what the fast experts read of the burst for each blink pair (``burst_tokens``);
``--fresh`` re-initialises that model first (the head before any training).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vidprism_ds.analysis.burst_tokens import burst_tokens, change_features, constant_fraction, probe_accuracy
from vidprism_ds.data import frequency_pairs

SEGMENT, BURST = 16, 16
SHORT_VIDEO_FRAMES = 64  # data_prep/shard.py's default --max-frames: shorter videos keep every frame


def multirate_data_config(data: Path):
    from vidprism_ds.config import load_config

    return load_config(None, [
        "data.dataset=custom", "data.hflip=false", f"data.labels={data / 'labels.txt'}",
        f"data.train_shards={data / 'shards-train'}", f"data.val_shards={data / 'shards-val'}",
        f"data.num_frames={SEGMENT + BURST}", f"data.multirate_burst_frames={BURST}", "data.clip_sampling=multirate",
        "model.head.frame_time_encoding=true", "model.head.expert_pos_embed=true", "data.image_size=32",
        "data.num_workers=1", "data.shuffle_buffer=64", "model.backbone.arch=tiny", "model.backbone.image_size=32"])


def _well_formed(times_t: torch.Tensor) -> bool:
    steps = torch.diff(times_t[SEGMENT:])
    consecutive = torch.allclose(steps, torch.full_like(steps, 1 / frequency_pairs.FPS), atol=1e-4)
    return bool(consecutive) and bool((torch.diff(times_t[:SEGMENT]) >= 0).all())


def check_clips(data: Path, train_clips: int = 320) -> dict:
    from vidprism_ds.data import build_eval_loader, build_train_loader

    cfg = multirate_data_config(data)
    result = {"train clips": 0, "train clips malformed": 0, "train batches": 0,
              "train batches with > 3 segment-part spans": 0}
    change = {period: [] for period in frequency_pairs.BLINK_PERIODS}
    for batch in build_train_loader(cfg.data, None, micro_batch=32, seed=0):
        times, frames = batch["frame_times"], batch["frames"].float()
        spans = {round(float(t[:SEGMENT].max() - t[:SEGMENT].min()), 1) for t in times}
        result["train batches"] += 1
        result["train batches with > 3 segment-part spans"] += len(spans) > 3
        for t, clip, label in zip(times, frames, batch["labels"].tolist()):
            result["train clips"] += 1
            result["train clips malformed"] += not _well_formed(t)
            if label < len(frequency_pairs.BLINK_PERIODS):
                brightness = clip[SEGMENT:].mean(dim=(1, 2, 3))
                change[frequency_pairs.BLINK_PERIODS[label]].append(float(torch.diff(brightness).abs().mean()))
        if result["train clips"] >= train_clips:
            break
    result["burst brightness change per frame, by period"] = {p: round(float(np.mean(v)), 2) for p, v in change.items()}
    rows = (data / "val.txt").read_text().splitlines()
    views = {"base holds every frame": [0, 0], "subsampled base": [0, 0]}
    for batch in build_eval_loader(cfg.data, None, batch_size=32):
        for b in np.flatnonzero(batch["valid"].numpy()):
            k = int(rows[int(batch["index"][b])].split()[0].rsplit("_", 1)[1].split(".")[0])
            short = frequency_pairs.draw_video((0, "val", k)).num_frames <= SHORT_VIDEO_FRAMES
            counts = views["base holds every frame" if short else "subsampled base"]
            for times_t in batch["frame_times"][b]:
                counts[0] += 1
                counts[1] += not _well_formed(times_t)
    result["eval views [count, malformed]"] = views
    return result


def probe(data: Path, export: Path, fresh: bool = False) -> dict:
    """Per blink pair, cross-validated probe accuracy on the burst frames and on each fast group's burst
    tokens and expert outputs (eval clips of the training videos), and the share of constant token runs."""
    from vidprism_ds.analysis.loading import load_export
    from vidprism_ds.data import build_eval_loader

    loaded = load_export(export)
    model = loaded.model.float()
    if fresh:
        from vidprism_ds.model.build import build_experiment_model

        model = build_experiment_model(loaded.cfg, num_classes=len(loaded.class_names)).model.float()
    cfg = multirate_data_config(data)
    tokens = burst_tokens(model, build_eval_loader(cfg.data, data / "shards-train", batch_size=64))
    result = {"clips": int(len(tokens.labels_n)), "fast rates": tokens.rates}
    for p, name in enumerate(frequency_pairs.PAIR_NAMES):
        ids = frequency_pairs.pair_class_ids(p)
        mask = np.isin(tokens.labels_n, ids)
        labels = tokens.labels_n[mask]
        row = {"frames: change": probe_accuracy(change_features(tokens.frames_nfd[mask]), labels)}
        for rate, group_tokens, outputs, kept in zip(tokens.rates, tokens.tokens, tokens.expert_out, tokens.kept):
            row[f"rate {rate} tokens: change"] = probe_accuracy(change_features(group_tokens[mask]), labels)
            row[f"rate {rate} expert outputs"] = probe_accuracy(outputs[mask], labels)
            row[f"rate {rate} constant share"] = {frequency_pairs.BLINK_PERIODS[c]: share for c, share in
                                                  constant_fraction(group_tokens[mask], labels, ids).items()}
            if group_tokens.shape[1] < tokens.frames_nfd.shape[1]:  # the burst was pooled into windows of r
                first_kept = (kept[mask] % rate == 0).mean(axis=1)
                row[f"rate {rate} kept first frame of window"] = {
                    frequency_pairs.BLINK_PERIODS[c]: float(first_kept[labels == c].mean()) for c in ids}
        result[name] = row
    return result


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--export", type=Path, default=None)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = probe(args.data, args.export, args.fresh) if args.export else check_clips(args.data)
    print(json.dumps(_rounded(result), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
