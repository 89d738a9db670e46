import pytest
import torch

from vidprism_ds.train.evaluate import EvalAccumulator, evaluate, video_probabilities


def test_padding_is_not_counted_and_top5_uses_the_ranking():
    acc = EvalAccumulator(num_classes=6)
    probs = torch.tensor([[0.9, 0.1, 0, 0, 0, 0],   # correct (label 0)
                          [0.5, 0.4, 0.1, 0, 0, 0],  # label 1: top-5 only
                          [0.0, 0.0, 0, 0, 0, 1.0]])  # padding row, would be "correct" for label 5
    acc.add(probs, torch.tensor([0, 1, 5]), torch.tensor([True, True, False]))
    result = acc.reduce(dp_size=1)
    assert result.samples == 2
    assert result.top1 == 0.5 and result.top5 == 1.0
    assert result.per_class_accuracy[:2] == [1.0, 0.0]
    assert result.confusion[1, 0] == 1 and result.confusion.sum() == 2


class Fixed(torch.nn.Module):
    """Class scores from the clip's first pixel: a dark view says class 0, a bright one class 1."""

    def forward(self, clips):
        first = (clips[:, 0, 0, 0, 0] > 0).float()
        logits = torch.stack([10 * (1 - first), 10 * first, torch.zeros_like(first)], dim=-1)
        return type("Out", (), {"logits": logits})()


def test_views_are_averaged_per_video():
    frames = torch.zeros(2, 2, 1, 3, 2, 2, dtype=torch.uint8)  # uint8, as the loader hands them over
    frames[:, 1] = 255
    frames[1, 0] = 255  # video 1: both views say class 1
    probs = video_probabilities(Fixed(), frames, text_cd=None, chunk=3)
    assert probs.shape == (2, 3)
    assert torch.allclose(probs[0, 0], probs[0, 1], atol=1e-4)  # one view each
    assert probs[1].argmax() == 1


def test_evaluation_progress_is_plain_lines_in_a_log(capsys):
    frames = torch.zeros(2, 1, 1, 3, 2, 2, dtype=torch.uint8)
    batches = [{"frames": frames, "labels": torch.tensor([0, 0]), "valid": torch.tensor([True, True])}] * 3
    result = evaluate(Fixed(), batches, num_classes=3, device=torch.device("cpu"), dtype=torch.float32,
                      dp_size=1, progress=True)
    assert result.top1 == 1.0
    err = capsys.readouterr().err  # pytest's capture is not a terminal, as a log file is not
    assert "\r" not in err and err.startswith("eval: 3/3 batch (100%)")


class TimeRecorder(torch.nn.Module):
    """Keeps the frame times of every call; the class scores say whether times came (class 2) or not."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, clips, frame_times=None):
        self.calls.append(frame_times)
        logits = torch.zeros(clips.shape[0], 3)
        logits[:, 2 if frame_times is not None else 0] = 10.0
        return type("Out", (), {"logits": logits})()


def test_view_times_are_chunked_with_their_views():
    frames = torch.zeros(2, 3, 4, 3, 2, 2, dtype=torch.uint8)  # B 2, V 3, T 4
    times_bvt = torch.arange(24, dtype=torch.float64).view(2, 3, 4) / 10  # every frame its own time
    model = TimeRecorder()
    probs = video_probabilities(model, frames, text_cd=None, chunk=4, frame_times_bvt=times_bvt)
    assert probs.argmax(dim=-1).tolist() == [2, 2]
    assert [tuple(t.shape) for t in model.calls] == [(4, 4), (2, 4)]  # 6 views in chunks of 4
    assert all(t.dtype == torch.float32 for t in model.calls)
    torch.testing.assert_close(torch.cat(model.calls), times_bvt.flatten(0, 1).float())
    with pytest.raises(ValueError, match="one time per frame of every view"):
        video_probabilities(model, frames, text_cd=None, chunk=4, frame_times_bvt=times_bvt[:, :2])


def test_evaluate_passes_a_batch_s_frame_times_and_omits_them_for_segment_clips():
    frames = torch.zeros(2, 1, 4, 3, 2, 2, dtype=torch.uint8)
    batch = {"frames": frames, "labels": torch.tensor([2, 2]), "valid": torch.tensor([True, True])}
    model = TimeRecorder()
    with_times = evaluate(model, [{**batch, "frame_times": torch.rand(2, 1, 4)}], num_classes=3,
                          device=torch.device("cpu"), dtype=torch.float32, dp_size=1)
    assert with_times.top1 == 1.0 and model.calls[-1].shape == (2, 4)
    segment = evaluate(model, [batch], num_classes=3, device=torch.device("cpu"), dtype=torch.float32, dp_size=1)
    assert segment.top1 == 0.0 and model.calls[-1] is None


def test_the_damaged_samples_of_an_evaluation_are_in_its_result_and_metrics_json(tmp_path):
    import json

    from vidprism_ds.analysis.eval_report import write_eval_report

    frames = torch.zeros(2, 1, 1, 3, 2, 2, dtype=torch.uint8)
    batches = [{"frames": frames, "labels": torch.tensor([0, 0]), "valid": torch.tensor([True, False]), "damaged": 1},
               {"frames": frames, "labels": torch.tensor([0, 0]), "valid": torch.tensor([True, True]), "damaged": 0}]
    result = evaluate(Fixed(), batches, num_classes=3, device=torch.device("cpu"), dtype=torch.float32, dp_size=1)
    assert (result.samples, result.damaged_samples, result.as_dict()["damaged_samples"]) == (3, 1, 1)
    write_eval_report(result, ["a", "b", "c"], tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["damaged_samples"] == 1
