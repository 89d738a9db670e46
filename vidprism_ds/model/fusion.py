"""Dynamic bidirectional interaction between slow and fast streams (docs/model.md#bidirectional-fusion).

Every ordered pair (i -> j) of streams of different speed has a gate
``g = sigmoid(MLP([mean_t s_i ; mean_t s_j]))`` and an update: slow -> fast interpolates s_i to s_j's
length and applies a 1x1 conv shared by all slow -> fast pairs; fast -> slow applies a strided
temporal conv owned by the pair. Same-speed pairs do nothing, so their gates are not built.

Two update rules:

* default: per clip, ``s_j + sum_i g_ij * [g_ij >= threshold] * update_ij``. A clip's result never
  depends on its batch-mates, every source contributes, and there is no host synchronisation.
* official: a pair is skipped for the *whole batch* when ``mean_b g_ij < threshold``, and each update
  overwrites s_j, so only the last surviving source in (i, j) loop order counts. Reproduced with
  tensor masks (still no host sync): the source kept for target j is the last active one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SlowToFast(nn.Module):
    """Linear interpolation to the fast stream's length, then a 1x1 conv (a per-token linear map).

    Both steps are linear and the interpolation weights sum to 1, so the projection is applied to
    the short slow stream first and the result interpolated: the same map with fewer FLOPs.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv1d(dim, dim, kernel_size=1)  # kept a Conv1d: official parameter layout

    def project(self, slow_bld: torch.Tensor) -> torch.Tensor:
        return F.linear(slow_bld, self.proj.weight.squeeze(-1), self.proj.bias)

    @staticmethod
    def stretch(projected_bld: torch.Tensor, fast_len: int) -> torch.Tensor:
        up_bdl = F.interpolate(projected_bld.transpose(1, 2), size=fast_len, mode="linear", align_corners=False)
        return up_bdl.transpose(1, 2)

    def forward(self, slow_bld: torch.Tensor, fast_len: int) -> torch.Tensor:
        return self.stretch(self.project(slow_bld), fast_len)


class FastToSlow(nn.Module):
    """Strided temporal conv, computed as unfold + one matmul.

    On CPU, oneDNN's Conv1d backward for these short, wide sequences costs several times the
    matmul it amounts to; unfolding the (kernel x D) patches keeps the official weight layout and
    the same result.
    """

    def __init__(self, dim: int, stride: int, kernel_size: int = 5):
        super().__init__()
        # stride = slow rate / fast rate, so the output length is ceil(T / slow rate) exactly.
        self.stride = stride
        self.kernel_size = kernel_size
        self.tconv = nn.Conv1d(dim, dim, kernel_size=kernel_size, stride=stride,
                               padding=kernel_size // 2, bias=False)

    def forward(self, fast_bld: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size // 2
        padded_bld = F.pad(fast_bld, (0, 0, pad, pad))
        patches_blDk = padded_bld.unfold(1, self.kernel_size, self.stride)  # (B, L_out, D, k)
        weight_oDk = self.tconv.weight
        return F.linear(patches_blDk.flatten(2), weight_oDk.flatten(1))


def _gate_mlp(dim: int) -> nn.Sequential:
    # Layout of the official score MLP: Linear(2D, D/4) -> ReLU -> Linear(D/4, 1) (sigmoid applied outside).
    return nn.Sequential(nn.Linear(2 * dim, dim // 4), nn.ReLU(), nn.Linear(dim // 4, 1))


class BidirectionalFusion(nn.Module):
    """``rates``: one per stream; a stream is slow when its rate is >= ``slow_rate_min``.

    ``same_length_streams``: every stream has the full length T whatever its nominal rate (the homogeneous
    head's full-rate streams, ``model.head.homogeneous_fusion``). The pairs, gates and parameter shapes
    are the same as for streams sampled at those rates; only the fast -> slow convs keep the length
    (stride 1) and slow -> fast interpolation is the identity, so what the fusion adds is a gated
    temporal convolution between streams, not a change of rate.
    """

    def __init__(self, dim: int, rates: list[int], slow_rate_min: int = 8, threshold: float = 0.3,
                 official: bool = False, same_length_streams: bool = False):
        super().__init__()
        self.rates = list(rates)
        self.is_slow = [r >= slow_rate_min for r in rates]
        self.threshold = threshold
        self.official = official
        n = len(rates)
        # Keys are the official flat index i * E + j so official checkpoints load by name.
        self.pairs = [(i, j) for i in range(n) for j in range(n) if self.is_slow[i] != self.is_slow[j]]
        self.score_mlps = nn.ModuleDict({str(i * n + j): _gate_mlp(dim) for i, j in self.pairs})
        has_slow_to_fast = any(self.is_slow[i] for i, _ in self.pairs)
        self.slow2fast = SlowToFast(dim) if has_slow_to_fast else None
        self.fast2slow_ops = nn.ModuleDict({
            f"{i}->{j}": FastToSlow(dim, stride=1 if same_length_streams else rates[j] // rates[i])
            for i, j in self.pairs if self.is_slow[j]
        })

    def gates(self, streams: list[torch.Tensor]) -> dict[tuple[int, int], torch.Tensor]:
        """Gate value g_ij per clip, shape (B,), for every cross-speed pair."""
        n = len(self.rates)
        summary_bd = [s.mean(dim=1) for s in streams]
        return {
            (i, j): torch.sigmoid(self.score_mlps[str(i * n + j)](torch.cat([summary_bd[i], summary_bd[j]], -1))).squeeze(-1)
            for i, j in self.pairs
        }

    def _update(self, streams: list[torch.Tensor], projected_slow: dict, i: int, j: int) -> torch.Tensor:
        if self.is_slow[i]:
            return self.slow2fast.stretch(projected_slow[i], streams[j].shape[1])
        return self.fast2slow_ops[f"{i}->{j}"](streams[i])

    def forward(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        """streams: list of (B, L_e, D), one per rate; returns the fused streams (same shapes)."""
        gate_b = self.gates(streams)
        # the shared slow->fast projection, once per slow stream rather than once per pair
        projected_slow = {i: self.slow2fast.project(streams[i])
                          for i in range(len(streams)) if self.is_slow[i] and self.slow2fast is not None}
        fused = list(streams)
        for j in range(len(streams)):
            sources = [i for i, jj in self.pairs if jj == j]  # ascending i: the official loop order
            if not sources:
                continue
            if self.official:
                coef_b = self._official_coefficients(gate_b, sources, j)
            else:
                coef_b = [gate_b[(i, j)] * (gate_b[(i, j)] >= self.threshold).to(gate_b[(i, j)].dtype)
                          for i in sources]
            total_bld = streams[j]
            for i, c_b in zip(sources, coef_b):
                total_bld = total_bld + c_b[:, None, None] * self._update(streams, projected_slow, i, j)
            fused[j] = total_bld
        return fused

    def _official_coefficients(self, gate_b: dict, sources: list[int], j: int) -> list[torch.Tensor]:
        """Last-writer-wins with batch-mean skipping, as masks: coefficient of source i for target j."""
        active = [(gate_b[(i, j)].mean() >= self.threshold).to(gate_b[(i, j)].dtype) for i in sources]
        coefs = []
        for idx, i in enumerate(sources):
            survives = active[idx]
            for later in active[idx + 1:]:
                survives = survives * (1.0 - later)
            coefs.append(gate_b[(i, j)] * survives)
        return coefs
