import pytest
import torch

from vidprism_ds.config.schema import BackboneConfig, ModelConfig
from vidprism_ds.data.presets import load_k710_index
from vidprism_ds.model.classifier_slicing import apply_init_class_map, slice_classifier
from vidprism_ds.model.video_model import build_video_model


def _model(num_classes, seed, variant="vidprism"):
    cfg = ModelConfig(variant=variant, backbone=BackboneConfig(arch="tiny", image_size=64))
    return build_video_model(cfg, num_classes=num_classes, num_frames=8, seed=seed).model.eval()


@pytest.mark.parametrize("target, classes, variant", [("k600", 600, "vidprism"), ("k400", 400, "meanpool")])
def test_sliced_k710_model_predicts_the_k710_scores_of_the_target_classes(target, classes, variant):
    k710_model = _model(710, seed=1, variant=variant)
    fine_tune = _model(classes, seed=2, variant=variant)  # other weights everywhere before loading
    fine_tune.load_state_dict(apply_init_class_map(k710_model.state_dict(), target), strict=True)

    clips = torch.randn(2, 8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = k710_model(clips).logits[:, load_k710_index(target)]
        torch.testing.assert_close(fine_tune(clips).logits, expected)


def test_rows_are_taken_in_the_given_order_and_the_source_is_untouched():
    weight = torch.arange(12.0).view(6, 2)
    state = {"module.head.classifier.weight": weight, "module.head.classifier.bias": torch.arange(6.0),
             "head.projection.0.weight": torch.ones(6, 6)}
    sliced = slice_classifier(state, [4, 0, 2], source_classes=6)
    assert sliced["module.head.classifier.weight"].tolist() == [[8.0, 9.0], [0.0, 1.0], [4.0, 5.0]]
    assert sliced["module.head.classifier.bias"].tolist() == [4.0, 0.0, 2.0]
    assert sliced["head.projection.0.weight"] is state["head.projection.0.weight"]  # no class axis
    assert state["module.head.classifier.weight"].shape == (6, 2)


def test_empty_map_leaves_the_state_alone_and_bad_sources_are_refused():
    state = {"classifier.weight": torch.zeros(400, 8), "classifier.bias": torch.zeros(400)}
    assert apply_init_class_map(state, "") == state
    with pytest.raises(ValueError, match=r"classifier.weight: has 400 classes, expected 710 .*init_class_map"):
        apply_init_class_map(state, "k400")
    with pytest.raises(ValueError, match="no classifier to slice"):
        apply_init_class_map({"proj.weight": torch.zeros(710, 8)}, "k400")
    with pytest.raises(ValueError, match="no K710 index map"):
        apply_init_class_map(state, "ucf101")


def test_fresh_map_keeps_everything_but_the_classifier(tmp_path):
    """UCF101 from a K710 model: 101 new classifier rows, every other weight from the checkpoint."""
    from vidprism_ds.config import load_config
    from vidprism_ds.model.classifier_slicing import load_init_weights

    k710_model = _model(710, seed=1)
    path = tmp_path / "k710.pt"
    torch.save(k710_model.state_dict(), path)
    fine_tune = _model(101, seed=2)
    new_classifier = fine_tune.head.classifier.weight.detach().clone()
    cfg = load_config(overrides=["data.dataset=ucf101", f"train.init_from={path}", "train.init_class_map=fresh"])
    load_init_weights(fine_tune, cfg.train.init_from, cfg.train.init_class_map)

    loaded = fine_tune.state_dict()
    for key, value in k710_model.state_dict().items():
        if "classifier" in key:
            assert loaded[key].shape[0] == 101
        else:
            assert torch.equal(loaded[key], value), key
    assert torch.equal(fine_tune.head.classifier.weight, new_classifier)

    # a checkpoint of another architecture is still refused: only the classifier may be missing
    bad = {k: v for k, v in k710_model.state_dict().items() if "experts" not in k}
    torch.save(bad, path)
    with pytest.raises(RuntimeError, match="does not match the model"):
        load_init_weights(_model(101, seed=2), cfg.train.init_from, cfg.train.init_class_map)
    with pytest.raises(ValueError, match="no classifier to drop"):
        apply_init_class_map({"proj.weight": torch.zeros(3, 3)}, "fresh")
