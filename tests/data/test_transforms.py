import random

import numpy as np
import pytest
import torch
from PIL import Image

from vidprism_ds.data.transforms import (CLIP_MEAN, CLIP_STD, apply_clip_augmentation, draw_clip_augmentation,
                                         eval_crop_boxes, eval_views)


def _unnormalise(x):
    return x * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)


def _gradient_image(width=80, height=60):
    # red grows left -> right, green top -> bottom: crops and flips change the picture
    xs = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    ys = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([xs, ys, np.full_like(xs, 60)], -1).astype(np.uint8))


def test_augmentation_is_the_same_for_every_frame_of_a_clip():
    frames = [_gradient_image()] * 6
    seen_flip = seen_gray = False
    for seed in range(40):
        aug = draw_clip_augmentation(80, 60, random.Random(seed), 0.2, flip_allowed=True, grayscale_prob=0.5)
        clip = apply_clip_augmentation(frames, aug, 32)
        assert clip.shape == (6, 3, 32, 32) and clip.dtype == torch.float32
        # identical input frames stay identical: one crop box, one flip, one grayscale decision per clip
        assert torch.equal(clip, clip[:1].expand_as(clip))
        pixels = _unnormalise(clip[0])
        red_increases = pixels[0, :, -1].mean() > pixels[0, :, 0].mean()
        assert red_increases != aug.flip or aug.grayscale
        if aug.grayscale:
            assert torch.allclose(pixels[0], pixels[1], atol=1e-5) and torch.allclose(pixels[1], pixels[2], atol=1e-5)
        seen_flip |= aug.flip
        seen_gray |= aug.grayscale
    assert seen_flip and seen_gray  # the test exercised both branches


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
    views = eval_views([_gradient_image()] * 4, 24, 3)
    assert views.shape == (3, 4, 3, 24, 24)
    red = _unnormalise(views[:, 0])[:, 0].mean(dim=(1, 2))
    assert red[0] < red[1] < red[2]  # left, centre, right
