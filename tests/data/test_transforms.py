import random

import pytest
import torch

from vidprism_ds.data.transforms import (CLIP_MEAN, CLIP_STD, apply_clip_augmentation, draw_clip_augmentation,
                                         eval_crop_boxes, eval_views, normalise)


def _gradient_frame(width=80, height=60):
    """uint8 (3, H, W): red grows left -> right, green top -> bottom, so crops and flips show."""
    xs = torch.linspace(0, 255, width).expand(height, width)
    ys = torch.linspace(0, 255, height)[:, None].expand(height, width)
    return torch.stack([xs, ys, torch.full_like(xs, 60)]).round().to(torch.uint8)


def test_augmentation_is_the_same_for_every_frame_of_a_clip():
    base = _gradient_frame()
    # frame t is the picture shifted by t pixels: identical augmentation keeps the shift constant
    frames = torch.stack([torch.roll(base, shifts=t, dims=-1) for t in range(6)])
    seen_flip = seen_gray = False
    for seed in range(40):
        aug = draw_clip_augmentation(80, 60, random.Random(seed), 0.2, flip_allowed=True, grayscale_prob=0.5)
        clip = apply_clip_augmentation(frames.expand(6, -1, -1, -1)[:1].expand(6, -1, -1, -1), aug, 32)
        assert clip.shape == (6, 3, 32, 32) and clip.dtype == torch.uint8
        # identical input frames stay identical: one crop box, one flip, one grayscale decision per clip
        assert torch.equal(clip, clip[:1].expand_as(clip))
        red = clip[0, 0].float()
        red_increases = red[:, -1].mean() > red[:, 0].mean()
        if aug.grayscale:
            assert torch.equal(clip[0, 0], clip[0, 1]) and torch.equal(clip[0, 1], clip[0, 2])
        else:
            assert red_increases != aug.flip
        seen_flip |= aug.flip
        seen_gray |= aug.grayscale
    assert seen_flip and seen_gray  # the test exercised both branches


def test_one_crop_box_for_all_frames_of_a_moving_clip():
    base = _gradient_frame(120, 60)
    frames = torch.stack([base[:, :, 4 * t:4 * t + 80] for t in range(6)])  # the camera pans 4 px a frame
    aug = draw_clip_augmentation(80, 60, random.Random(3), 1.0, flip_allowed=False, grayscale_prob=0.0)
    clip = apply_clip_augmentation(frames, aug, 80).float()
    # with the full-frame crop at source size the pan survives: each frame's red is 4 steps above the last
    steps = (clip[1:, 0].mean(dim=(1, 2)) - clip[:-1, 0].mean(dim=(1, 2)))
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=0.6) and steps[0] > 5


def test_normalise_matches_clip_statistics():
    x = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    expected = (x.float() / 255 - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    out = normalise(x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert torch.allclose(out, expected, atol=1e-5)


def test_no_flip_when_not_allowed():
    assert not any(draw_clip_augmentation(80, 60, random.Random(s), 0.4, False, 0.2).flip for s in range(200))


def test_crop_box_respects_scale_and_bounds():
    for seed in range(100):
        aug = draw_clip_augmentation(80, 60, random.Random(seed), 0.5, True, 0.0)
        left, top, right, bottom = aug.box
        assert 0 <= left < right <= 80 and 0 <= top < bottom <= 60
        area = (right - left) * (bottom - top) / (80 * 60)
        assert 0.45 <= area <= 1.0


def test_eval_crops():
    assert eval_crop_boxes(80, 60, 1) == [(10.0, 0.0, 70.0, 60.0)]
    assert eval_crop_boxes(80, 60, 3) == [(0, 0, 60, 60), (10.0, 0, 70.0, 60), (20, 0, 80, 60)]
    assert eval_crop_boxes(60, 80, 3)[2] == (0, 20, 60, 80)  # portrait: along the height
    assert len(eval_crop_boxes(80, 60, 4)) == 4
    with pytest.raises(ValueError):
        eval_crop_boxes(80, 60, 2)
    views = eval_views(_gradient_frame().expand(4, -1, -1, -1), 24, 3)
    assert views.shape == (3, 4, 3, 24, 24) and views.dtype == torch.uint8
    red = views[:, 0, 0].float().mean(dim=(1, 2))
    assert red[0] < red[1] < red[2]  # left, centre, right
