import pytest

from vidprism_ds.config import ConfigError, ExperimentConfig, dump_yaml, from_dict, load_config


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    cfg = load_config()
    assert isinstance(cfg, ExperimentConfig)
    path = tmp_path / "c.yaml"
    dump_yaml(cfg, path)
    assert load_config(path) == cfg


def test_overrides_set_nested_keys_with_yaml_typing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  head:\n    mode: official\n")
    cfg = load_config(path, ["optim.lr=0.001", "model.head.sampling_rates=[2, 4]", "logging.wandb_mode=disabled",
                             "model.backbone.pretrained_path=/weights/ViT-B-16.pt"])
    assert cfg.model.head.mode == "official"
    assert cfg.optim.lr == 0.001 and cfg.model.head.sampling_rates == [2, 4]
    assert cfg.model.backbone.pretrained_path == "/weights/ViT-B-16.pt"


def test_integer_where_float_expected_is_accepted():
    assert load_config(overrides=["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize("override,key", [
    ("model.head.num_expert=4", "model.head.num_expert: unknown key"),
    ("nope.x=1", "nope: unknown key"),
    ("train.epochs=two", "train.epochs: expected an integer"),
    ("train.epochs=2.5", "train.epochs: expected an integer"),
    ("train.resume=1", "train.resume: expected true/false"),
    ("model.head.mode=fast", "model.head.mode: 'fast' is not one of"),
    ("model.head.sampling_rates=4", "model.head.sampling_rates: expected a list"),
    ("model.head.sampling_rates=[2, x]", "model.head.sampling_rates[1]: expected an integer"),
    ("model.head=3", "model.head: expected a mapping"),
    ("optim.lr", "expected key=value"),
])
def test_bad_keys_and_types_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(key.split(":")[0]) or key in str(err.value)
    assert key in str(err.value)


@pytest.mark.parametrize("overrides,key", [
    (["parallel.ep_size=3"], "parallel.ep_size"),
    (["model.head.sampling_rates=[2, 6, 8]"], "model.head.sampling_rates"),
    (["model.head.sampling_rates=[8, 4]"], "model.head.sampling_rates"),
    (["model.head.router_topk=2"], "model.head.router_topk"),
    (["model.head.mode=official", "model.head.experts_per_rate=2", "model.head.router_topk=1"],
     "model.head.experts_per_rate"),
    (["model.variant=homogeneous", "model.head.experts_per_rate=2", "model.head.router_topk=1"],
     "model.head.experts_per_rate"),
    (["parallel.ep_size=0"], "parallel.ep_size"),
    (["data.image_size=96"], "data.image_size"),
    (["model.backbone.arch=ViT-H-99"], "model.backbone.arch"),
    (["model.backbone.trainable_blocks=2"], "model.backbone.trainable_blocks"),
    (["model.loss.rank=-1"], "model.loss.rank"),
])
def test_impossible_combinations_fail_with_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert str(err.value).startswith(key + ":")


def test_yaml_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_from_dict_rejects_unknown_section():
    with pytest.raises(ConfigError, match="^trainer: unknown key"):
        from_dict({"trainer": {}})


def test_init_from_and_class_map():
    cfg = load_config(overrides=["data.dataset=k600", "train.init_from=runs/k710/model.pt", "train.init_class_map=k600"])
    assert (cfg.train.init_from, cfg.train.init_class_map) == ("runs/k710/model.pt", "k600")
    assert load_config(overrides=["train.init_from=ckpt.pt"]).train.init_class_map == ""
    # a dataset whose classes K710 lacks starts a new classifier from the K710 model
    assert load_config(overrides=["data.dataset=ssv2", "train.init_from=a.pt",
                                  "train.init_class_map=fresh"]).train.init_class_map == "fresh"


@pytest.mark.parametrize("overrides, message", [
    (["data.dataset=ucf101", "train.init_from=a.pt", "train.init_class_map=ucf101"], "is not one of"),
    (["data.dataset=k400", "train.init_class_map=k400"], "train.init_from, which is not set"),
    (["data.dataset=k600", "train.init_from=a.pt", "train.init_class_map=k400"], "data.dataset is 'k600'"),
])
def test_init_class_map_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=f"^train.init_class_map: .*{message}"):
        load_config(overrides=overrides)
