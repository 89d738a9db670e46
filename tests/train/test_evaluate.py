import torch

from vidprism_ds.train.evaluate import EvalAccumulator, video_probabilities


def test_padding_is_not_counted_and_top5_uses_the_ranking():
    acc = EvalAccumulator(num_classes=6)
    probs = torch.tensor([[0.9, 0.1, 0, 0, 0, 0],   # correct (label 0)
                          [0.5, 0.4, 0.1, 0, 0, 0],  # label 1: top-5 only
                          [0.0, 0.0, 0, 0, 0, 1.0]])  # padding row, would be "correct" for label 5
    acc.add(probs, torch.tensor([0, 1, 5]), torch.tensor([True, True, False]))
    result = acc.reduce(world_size=1)
    assert result.samples == 2
    assert result.top1 == 0.5 and result.top5 == 1.0
    assert result.per_class_accuracy[:2] == [1.0, 0.0]
    assert result.confusion[1, 0] == 1 and result.confusion.sum() == 2


def test_views_are_averaged_per_video():
    class Fixed(torch.nn.Module):
        """Class scores from the clip's first pixel: a dark view says class 0, a bright one class 1."""

        def forward(self, clips):
            first = (clips[:, 0, 0, 0, 0] > 0).float()
            logits = torch.stack([10 * (1 - first), 10 * first, torch.zeros_like(first)], dim=-1)
            return type("Out", (), {"logits": logits})()

    frames = torch.zeros(2, 2, 1, 3, 2, 2, dtype=torch.uint8)  # uint8, as the loader hands them over
    frames[:, 1] = 255
    frames[1, 0] = 255  # video 1: both views say class 1
    probs = video_probabilities(Fixed(), frames, text_cd=None, chunk=3)
    assert probs.shape == (2, 3)
    assert torch.allclose(probs[0, 0], probs[0, 1], atol=1e-4)  # one view each
    assert probs[1].argmax() == 1
