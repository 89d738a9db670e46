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

from vidprism_ds.model.head_constants import ConstantCache, stack_parameters


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
        self._constants = ConstantCache()

    def gates(self, streams: list[torch.Tensor]) -> dict[tuple[int, int], torch.Tensor]:
        """Gate value g_ij per clip, shape (B,), for every cross-speed pair."""
        lengths = [s.shape[1] for s in streams]
        plan = self._plan(lengths, streams[0])
        gate_pb = self._gates_pb(torch.cat(streams, dim=1), plan)
        return {pair: gate_pb[p] for p, pair in enumerate(self.pairs)}

    def _plan(self, lengths: list[int], like: torch.Tensor) -> "_FusionPlan":
        key = (tuple(lengths), like.device, like.dtype)
        return self._constants.get(key, lambda: _FusionPlan.build(self, lengths, like))

    def _gates_pb(self, packed_bsd: torch.Tensor, plan: "_FusionPlan") -> torch.Tensor:
        """Every pair's gate MLP as two batched matmuls over the pairs' stacked weights -> (P, B)."""
        mlps = [self.score_mlps[key] for key in plan.mlp_keys]
        # [mean_t s_i ; mean_t s_j] of every pair in one matmul: rows (source of p, target of p) of (2, P, S)
        batch, _, dim = packed_bsd.shape
        pair_in_pbk = (plan.pair_mean_ms @ packed_bsd).view(batch, 2, -1, dim).permute(2, 0, 1, 3).reshape(-1, batch, 2 * dim)
        w1_pkh = stack_parameters([m[0].weight for m in mlps]).transpose(1, 2)
        b1_p1h = stack_parameters([m[0].bias for m in mlps]).unsqueeze(1)
        hidden_pbh = torch.baddbmm(b1_p1h, pair_in_pbk, w1_pkh).relu()
        w2_ph1 = stack_parameters([m[2].weight for m in mlps]).transpose(1, 2)
        b2_p11 = stack_parameters([m[2].bias for m in mlps]).unsqueeze(1)
        return torch.baddbmm(b2_p11, hidden_pbh, w2_ph1).squeeze(-1).sigmoid()

    def forward(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        """streams: list of (B, L_e, D), one per rate; returns the fused streams (same shapes).

        All streams are packed into one (B, S, D) tensor (S = sum of lengths, static offsets); every
        pair's update is then a few batched ops: slow -> fast is one per-clip mixing matrix (the gated
        sum of the pairs' interpolation matrices) applied to the projected tokens, fast -> slow is one
        batched matmul over the pairs' stacked conv weights followed by a gated scatter matrix.
        """
        lengths = [s.shape[1] for s in streams]
        plan = self._plan(lengths, streams[0])
        packed_bsd = torch.cat(streams, dim=1)
        gate_pb = self._gates_pb(packed_bsd, plan)
        coef_bp = (self._official_coefficients(gate_pb, plan) if self.official
                   else gate_pb * (gate_pb >= self.threshold).to(gate_pb.dtype)).t()
        fused_bsd = packed_bsd
        if plan.s2f_pairs:
            # sum_p coef_p[b] * interp_p: rows of the fast targets, columns of the slow sources
            mix_bss = (coef_bp[:, plan.s2f_pairs] @ plan.interp_pss.flatten(1)).view(-1, *plan.interp_pss.shape[1:])
            projected_bsd = F.linear(packed_bsd, self.slow2fast.proj.weight.squeeze(-1), self.slow2fast.proj.bias)
            fused_bsd = fused_bsd + mix_bss @ projected_bsd
        if plan.f2s_pairs:
            fused_bsd = fused_bsd + self._fast_to_slow(packed_bsd, coef_bp[:, plan.f2s_pairs], plan)
        return list(fused_bsd.split(lengths, dim=1))

    def _fast_to_slow(self, packed_bsd: torch.Tensor, coef_bq: torch.Tensor, plan: "_FusionPlan") -> torch.Tensor:
        """The fast -> slow convs of all Q pairs: patches gathered by a constant index (a zero row for the
        conv padding and for pairs with fewer outputs), one bmm, one gated scatter back."""
        batch, _, dim = packed_bsd.shape
        ops = [self.fast2slow_ops[key] for key in plan.f2s_keys]
        kernel = ops[0].kernel_size
        padded_sbd = F.pad(packed_bsd, (0, 0, 0, 1)).transpose(0, 1)  # row S is the zero row
        patches_qlbkd = padded_sbd[plan.patch_qlk].transpose(2, 3)
        n_pairs, out_len = plan.patch_qlk.shape[:2]
        patches_q_lb_kd = patches_qlbkd.reshape(n_pairs, out_len * batch, kernel * dim)
        # conv weight (O, D, k) -> (k * D, O), matching the (k, D) order of the patches
        weight_q_kd_o = stack_parameters([op.tconv.weight for op in ops]).permute(0, 3, 2, 1).reshape(n_pairs, kernel * dim, -1)
        out_qlbo = torch.bmm(patches_q_lb_kd, weight_q_kd_o).view(n_pairs, out_len, batch, -1)
        # gated scatter: (B, S, Q * L) = constant placement (S, Q, L) x per-clip coefficient (B, Q)
        scatter_bsm = (plan.scatter_sql * coef_bq[:, None, :, None]).flatten(2)
        return scatter_bsm @ out_qlbo.permute(2, 0, 1, 3).reshape(batch, n_pairs * out_len, -1)

    def _official_coefficients(self, gate_pb: torch.Tensor, plan: "_FusionPlan") -> torch.Tensor:
        """Last-writer-wins with batch-mean skipping, as masks: coefficient of each pair (P, B).

        A pair survives when it is active and no later source of the same target is; ``later_pp`` marks,
        for pair p, the pairs q with the same target and a later source (products of 0/1 are exact)."""
        active_p = (gate_pb.mean(dim=1) >= self.threshold).to(gate_pb.dtype)
        survives_p = active_p * (1.0 - plan.later_pp * active_p).prod(dim=1)
        return gate_pb * survives_p[:, None]


class _FusionPlan:
    """The constant tensors of the packed fusion for one set of stream lengths (see ``ConstantCache``)."""

    @staticmethod
    def build(fusion: BidirectionalFusion, lengths: list[int], like: torch.Tensor) -> "_FusionPlan":
        plan = _FusionPlan()
        device, dtype = like.device, like.dtype
        n, total = len(lengths), sum(lengths)
        offsets = [sum(lengths[:e]) for e in range(n)]
        pairs = fusion.pairs
        plan.mlp_keys = [str(i * n + j) for i, j in pairs]
        pair_mean_ms = torch.zeros(2 * len(pairs), total, device=device, dtype=dtype)
        for p, (i, j) in enumerate(pairs):
            pair_mean_ms[p, offsets[i]:offsets[i] + lengths[i]] = 1.0 / lengths[i]
            pair_mean_ms[len(pairs) + p, offsets[j]:offsets[j] + lengths[j]] = 1.0 / lengths[j]
        plan.pair_mean_ms = pair_mean_ms
        later_pp = torch.zeros(len(pairs), len(pairs), device=device, dtype=dtype)
        for p, (i, j) in enumerate(pairs):
            for q, (i2, j2) in enumerate(pairs):
                later_pp[p, q] = float(j2 == j and i2 > i)
        plan.later_pp = later_pp

        plan.s2f_pairs = [p for p, (i, _) in enumerate(pairs) if fusion.is_slow[i]]
        interp = torch.zeros(len(plan.s2f_pairs), total, total, device=device, dtype=dtype)
        for q, p in enumerate(plan.s2f_pairs):
            i, j = pairs[p]
            # F.interpolate of the identity gives its exact weights (linear, align_corners=False)
            eye_1ll = torch.eye(lengths[i], device=device, dtype=dtype).unsqueeze(0)
            weights_ji = SlowToFast.stretch(eye_1ll, lengths[j])[0]
            interp[q, offsets[j]:offsets[j] + lengths[j], offsets[i]:offsets[i] + lengths[i]] = weights_ji
        plan.interp_pss = interp

        plan.f2s_pairs = [p for p, (i, _) in enumerate(pairs) if not fusion.is_slow[i]]
        plan.f2s_keys = [f"{pairs[p][0]}->{pairs[p][1]}" for p in plan.f2s_pairs]
        out_len = max([lengths[pairs[p][1]] for p in plan.f2s_pairs], default=0)
        kernel = fusion.fast2slow_ops[plan.f2s_keys[0]].kernel_size if plan.f2s_pairs else 1
        patch_qlk = torch.full((len(plan.f2s_pairs), out_len, kernel), total, dtype=torch.long, device=device)
        scatter_sql = torch.zeros(total, len(plan.f2s_pairs), out_len, device=device, dtype=dtype)
        for q, p in enumerate(plan.f2s_pairs):
            i, j = pairs[p]
            stride = fusion.fast2slow_ops[plan.f2s_keys[q]].stride
            for l in range(lengths[j]):
                for k in range(kernel):
                    t = l * stride + k - kernel // 2
                    if 0 <= t < lengths[i]:
                        patch_qlk[q, l, k] = offsets[i] + t
                scatter_sql[offsets[j] + l, q, l] = 1.0
        plan.patch_qlk = patch_qlk
        plan.scatter_sql = scatter_sql
        return plan
