"""Plain loop references written from docs/model.md#what-each-part-computes, for checking the vectorised modules.

Every function loops over clips and windows the way the text describes the computation, reading
the parameters of the project's modules. They are slow on purpose; ``bench/head.py`` also uses
``reference_head_forward`` as the "straightforward per-window loop" baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_sampler(sampler, x_btd, official: bool, compute_rank_loss: bool = False, prior_bt=None):
    """Returns (stream (B, n, D), rank_loss, kept frame indices (B, n))."""
    batch, num_frames, _ = x_btd.shape
    rate = sampler.rate
    streams, keeps, window_losses = [], [], []
    for b in range(batch):
        tokens, kept_idx = [], []
        for start in range(0, num_frames, rate):
            window = x_btd[b, start:start + rate]  # (w, D)
            w = window.shape[0]
            if w == 1:
                tokens.append(window[0])
                kept_idx.append(start)
                continue
            z = sampler.metric_proj(window)
            m = F.normalize(z, dim=-1)
            sim = m @ m.t()
            sim = sim - torch.diag(torch.diag(sim))  # diagonal set to 0
            score = sampler.score_head(z).squeeze(-1)
            mix = sampler.alpha_mix * score + (1 - sampler.alpha_mix) * window.norm(dim=-1)
            k = int(mix.argmax())
            attn = torch.softmax(sim / sampler.tau, dim=-1)
            others = [j for j in range(w) if j != k]
            total = sum(attn[j, k] for j in others)
            out = window[k].clone()
            for j in others:
                weight = attn[j, k] / (attn[j, k] + 1e-6) if official else attn[j, k] / (total + 1e-6)
                out = out + 0.5 * weight * window[j]
            tokens.append(out)
            kept_idx.append(start + k)
            if compute_rank_loss:
                if prior_bt is not None:
                    target = prior_bt[b, start:start + w]
                else:
                    target = window.norm(dim=-1) + sim.mean(dim=0)
                p_pred = torch.softmax(score / sampler.score_temp, -1)
                p_tgt = torch.softmax(target.detach() / sampler.score_temp, -1)
                kl = (p_tgt * (p_tgt.clamp_min(1e-9).log() - p_pred.clamp_min(1e-9).log())).sum()
                window_losses.append(kl)
        streams.append(torch.stack(tokens))
        keeps.append(torch.tensor(kept_idx))
    rank = torch.stack(window_losses).mean() if window_losses else x_btd.new_zeros(())
    return torch.stack(streams), rank, torch.stack(keeps)


def reference_fusion(fusion, streams, official: bool):
    """Pair by pair, clip by clip (default) or with the official batch-mean skip and overwrite."""
    n = len(streams)
    batch = streams[0].shape[0]
    summaries = [s.mean(dim=1) for s in streams]
    out = [s.clone() for s in streams]
    for i in range(n):
        for j in range(n):
            if i == j or fusion.is_slow[i] == fusion.is_slow[j]:
                continue
            mlp = fusion.score_mlps[str(i * n + j)]
            gate = torch.sigmoid(mlp(torch.cat([summaries[i], summaries[j]], -1))).squeeze(-1)
            if fusion.is_slow[i]:
                up = F.interpolate(streams[i].transpose(1, 2), size=streams[j].shape[1], mode="linear",
                                   align_corners=False)
                update = fusion.slow2fast.proj(up).transpose(1, 2)
            else:
                update = fusion.fast2slow_ops[f"{i}->{j}"].tconv(streams[i].transpose(1, 2)).transpose(1, 2)
            if official:
                if gate.mean() < fusion.threshold:
                    continue
                out[j] = streams[j] + gate[:, None, None] * update  # overwrite: last writer wins
            else:
                for b in range(batch):
                    if gate[b] >= fusion.threshold:
                        out[j][b] = out[j][b] + gate[b] * update[b]
    return out


def reference_readout(readout, expert_outputs):
    """Clip by clip: concatenate tokens, attend with the query, sum attention per expert."""
    fused, weights = [], []
    for b in range(expert_outputs[0].shape[0]):
        kv = torch.cat([o[b] for o in expert_outputs], dim=0)[None]
        pooled, attn = readout.attn(readout.global_query[0][None], kv, kv, need_weights=True)
        fused.append(readout.ln(pooled[0, 0]))
        attn = attn[0, 0]
        start, per_expert = 0, []
        for o in expert_outputs:
            per_expert.append(attn[start:start + o.shape[1]].sum())
            start += o.shape[1]
        weights.append(torch.stack(per_expert))
    return torch.stack(fused), torch.stack(weights)


def reference_head_forward(head, x_btd):
    """The whole head, loops everywhere. Returns (logits, expert_weights, rank_loss)."""
    official = head.official
    sampled = [reference_sampler(s, x_btd, official, compute_rank_loss=head.training) for s in head.samplers]
    streams = [s[0] for s in sampled]
    if head.fusion is not None:
        streams = reference_fusion(head.fusion, streams, official)
    outputs = [head.experts[str(e)](s) for e, s in enumerate(streams)]
    fused, weights = reference_readout(head.readout, outputs)
    rank = torch.stack([s[1] for s in sampled]).mean()
    return head.classifier(fused), weights, rank
