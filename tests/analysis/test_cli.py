"""``python -m vidprism_ds.analysis`` on an exported tiny model and a list of real (synthetic) videos."""

import json

import pytest
import torch

from vidprism_ds.analysis.__main__ import main
from vidprism_ds.analysis.loading import load_export
from vidprism_ds.config import dump_yaml, load_config
from vidprism_ds.data.generated_videos import write_video
from vidprism_ds.data.synthetic import render_video
from vidprism_ds.model.video_model import build_video_model

OVERRIDES = ["model.backbone.image_size=32", "data.image_size=32", "data.num_frames=8", "data.num_workers=0"]


def _videos(root, per_class=2):
    rows = []
    for k in range(4 * per_class):
        rel = f"v/{k}.mp4"
        write_video(root / rel, render_video(("analysis", k), k % 4, 32, 8))
        rows.append(f"{rel} {k % 4}\n")
    (root / "val.txt").write_text("".join(rows))
    return root / "val.txt"


def _export(tmp_path, variant):
    cfg = load_config(None, OVERRIDES + [f"model.variant={variant}"])
    model = build_video_model(cfg.model, 4, 8, seed=5).model
    export = tmp_path / f"{variant}.pt"
    torch.save(model.state_dict(), export)
    dump_yaml(cfg, export.with_suffix(".yaml"))
    return export, model


def test_load_export_restores_the_weights_and_finds_the_config(tmp_path):
    export, model = _export(tmp_path, "vidprism")
    loaded = load_export(export)
    assert loaded.class_names[0] == "moving right" and not loaded.model.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), name
    export.with_suffix(".yaml").unlink()
    with pytest.raises(FileNotFoundError, match="pass --config"):
        load_export(export)


@pytest.mark.parametrize("variant,has_keep", [("vidprism", True), ("homogeneous", False)])
def test_cli_writes_the_figures_and_summary(tmp_path, variant, has_keep):
    val = _videos(tmp_path)
    export, _ = _export(tmp_path, variant)
    out = tmp_path / "out"
    assert main([str(export), "--data", str(val), "--out", str(out), "--batch-size", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 8 and len(summary["weight_by_class"]) == 4
    assert len(summary["expert_similarity"]) == 4 and len(summary["expert_names"]) == 4
    for row in summary["weight_by_class"]:
        assert sum(row) == pytest.approx(1.0, abs=1e-4)
    pngs = {p.name for p in out.glob("*.png")}
    expected = {"expert_weight_by_class.png", "expert_similarity.png"} | ({"keep_positions.png"} if has_keep else set())
    assert pngs == expected
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
