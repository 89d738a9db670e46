"""Every experiment preset in configs/ loads through the typed config (a renamed key breaks this)."""

from pathlib import Path

import pytest

from vidprism_ds.config import dump_yaml, load_config
from vidprism_ds.config.validation import NAMED_ARCHS
from vidprism_ds.data.presets import K710_SUBSETS, effective_hflip, get_preset, is_direction_sensitive

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = sorted(CONFIGS.glob("*.yaml"))
EXPECTED = {"k710_vitb16", "k400_vitb16", "k400_vitl14", "k400_vith14", "k400_vitbigg14",
            "fewshot_hmdb51_vitb16", "fewshot_ucf101_vitb16", "fewshot_ssv2_vitb16"}


def test_the_promised_presets_exist():
    assert EXPECTED <= {p.stem for p in PRESETS}


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    dumped = tmp_path / path.name
    dump_yaml(cfg, dumped)
    assert load_config(dumped) == cfg
    # the recipe's fixed points: 32 frames, flips exactly where the classes do not depend on direction
    assert cfg.data.num_frames == 32
    assert effective_hflip(cfg.data.dataset, cfg.data.hflip) == (not is_direction_sensitive(cfg.data.dataset))
    assert cfg.logging.run_name == path.stem and cfg.train.output_dir.endswith(path.stem)
    assert cfg.model.backbone.pretrained_path, "a preset trains from real CLIP weights"


@pytest.mark.parametrize("path", [p for p in PRESETS if p.stem.startswith("k400_")], ids=lambda p: p.stem)
def test_kinetics_presets_fine_tune_from_k710_by_slicing(path):
    cfg = load_config(path)
    assert cfg.train.init_class_map == cfg.data.dataset and cfg.data.dataset in K710_SUBSETS
    assert cfg.train.init_from
    assert get_preset(cfg.data.dataset).num_classes < get_preset("k710").num_classes


@pytest.mark.parametrize("stem, arch", [("k400_vith14", "ViT-H-14"), ("k400_vitbigg14", "ViT-bigG-14")])
def test_giant_backbone_presets_validate_for_laion_weights_on_one_node(stem, arch):
    cfg = load_config(CONFIGS / f"{stem}.yaml")
    backbone = cfg.model.backbone
    assert backbone.arch == arch and arch in NAMED_ARCHS
    assert backbone.quick_gelu is False  # LAION's towers were trained with plain GELU
    assert backbone.grad_checkpointing and cfg.parallel.tp_size >= 1
    # one 8-GPU node trains the global batch without accumulation, every data-parallel rank a whole micro-batch
    data_parallel = 8 // cfg.parallel.tp_size
    assert cfg.train.global_batch == cfg.train.micro_batch * data_parallel
    # the L/14 recipe otherwise (there is no official one for these backbones)
    l14 = load_config(CONFIGS / "k400_vitl14.yaml")
    assert (cfg.optim, cfg.model.head, cfg.model.loss, cfg.data) == (l14.optim, l14.model.head, l14.model.loss, l14.data)


def test_a_renamed_key_is_refused(tmp_path):
    text = (CONFIGS / "k400_vitb16.yaml").read_text().replace("clip_ratio:", "clip_ration:")
    (tmp_path / "typo.yaml").write_text(text)
    with pytest.raises(ValueError, match="optim.clip_ration: unknown key"):
        load_config(tmp_path / "typo.yaml")
