"""Decoding the picked JPEG frame members."""

from types import SimpleNamespace

import torch

from vidprism_ds.data import jpeg


def test_decoded_frames_come_back_in_pick_order_repeats_and_all():
    from torchvision.io import encode_jpeg

    class Member(SimpleNamespace):
        def read(self) -> bytes:
            return self.data

    # three flat frames of grey 0, 120 and 240: each decodes to about its own value
    members = [Member(name=f"{k}.jpg", data=encode_jpeg(torch.full((3, 8, 8), 120 * k, dtype=torch.uint8)).numpy().tobytes())
               for k in range(3)]
    for picks in ([0, 1, 2], [2, 0, 1], [0, 2, 1, 2], [1, 1]):  # a multirate clip's parts are not one ascending run
        greys = jpeg.decode_jpegs(members, picks).float().mean(dim=(1, 2, 3))
        assert (greys / 120).round().long().tolist() == picks
