"""Several ``TemporalExpert``s run as one batched computation (docs/model.md#temporal-experts).

The experts of a head have one architecture and differ by their weights and by the length of the
stream they read. Run one by one they launch the layer's ~100 forward and backward operators per
expert; here their weights are stacked at forward time (one ``torch.stack`` per parameter, so the state
dict keeps its per-expert keys) and their inputs padded to the longest stream, so every matmul is one
``baddbmm`` over the experts, attention is one SDPA call with a key mask on the padding, and the
LayerNorms one normalisation followed by the stacked affine maps. Padded tokens are never read by a
real token (masked keys; every other op is per token) and are cut off the outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidprism_ds.model.experts import TemporalExpert
from vidprism_ds.model.head_constants import ConstantCache, stack_parameters

_CONSTANTS = ConstantCache()


def can_batch(experts: list, inputs: list[torch.Tensor]) -> bool:
    """Same expert type, heads and widths, and the same number of streams for each expert."""
    if len(experts) < 2 or not all(type(e) is TemporalExpert for e in experts):
        return False
    first = experts[0]
    same_layout = all(e.attn.num_heads == first.attn.num_heads and e.ffn[0].out_features == first.ffn[0].out_features
                      and (e.pos_embed is None) == (first.pos_embed is None) for e in experts)
    return same_layout and len({x.shape[0] for x in inputs}) == 1 and len({x.dtype for x in inputs}) == 1


def _layout(lengths: tuple[int, ...], device: torch.device):
    """Index (E, L_max) of each expert's tokens in the concatenated streams (the zero row S for padding),
    and the key mask (E, 1, 1, 1, L_max), None when every stream has L_max tokens."""
    total, longest = sum(lengths), max(lengths)
    index_el = torch.full((len(lengths), longest), total, dtype=torch.long, device=device)
    offset = 0
    for e, length in enumerate(lengths):
        index_el[e, :length] = torch.arange(offset, offset + length, device=device)
        offset += length
    mask = None if min(lengths) == longest else (index_el < total)[:, None, None, None, :]
    return index_el, mask


def _stacked_layer_norm(x_end: torch.Tensor, norms: list) -> torch.Tensor:
    weight_e1d = stack_parameters([n.weight for n in norms]).unsqueeze(1)
    bias_e1d = stack_parameters([n.bias for n in norms]).unsqueeze(1)
    return torch.addcmul(bias_e1d, F.layer_norm(x_end, x_end.shape[-1:], eps=norms[0].eps), weight_e1d)


def _stacked_linear(x_end: torch.Tensor, linears: list) -> torch.Tensor:
    """x (E, N, in) -> (E, N, out) with each expert's own Linear, one baddbmm."""
    weight_eio = stack_parameters([lin.weight for lin in linears]).transpose(1, 2)
    bias_e1o = stack_parameters([lin.bias for lin in linears]).unsqueeze(1)
    return torch.baddbmm(bias_e1o, x_end, weight_eio)


def batched_experts_forward(experts: list[TemporalExpert], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[experts[e](inputs[e]) for e]`` as one batched computation; inputs (N, L_e, D)."""
    lengths = tuple(x.shape[1] for x in inputs)
    batch, dim = inputs[0].shape[0], inputs[0].shape[2]
    n_experts, longest = len(experts), max(lengths)
    heads = experts[0].attn.num_heads
    index_el, key_mask = _CONSTANTS.get((lengths, inputs[0].device), lambda: _layout(lengths, inputs[0].device))

    packed_snd = F.pad(torch.cat(inputs, dim=1), (0, 0, 0, 1)).transpose(0, 1)  # row S: zeros (padding)
    x_enld = packed_snd[index_el].transpose(1, 2)
    if experts[0].pos_embed is not None:
        # each table's first L_e rows, padded to L_max (the padded tokens are dropped anyway)
        pos_eld = stack_parameters([F.pad(e.pos_embed[:length], (0, 0, 0, longest - length))
                               for e, length in zip(experts, lengths)])
        x_enld = x_enld + pos_eld.unsqueeze(1)
    x_emd = x_enld.reshape(n_experts, batch * longest, dim)

    qkv_emf = torch.baddbmm(stack_parameters([e.attn.in_proj_bias for e in experts]).unsqueeze(1), x_emd,
                            stack_parameters([e.attn.in_proj_weight for e in experts]).transpose(1, 2))
    q, k, v = qkv_emf.view(n_experts, batch, longest, 3, heads, dim // heads).permute(3, 0, 1, 4, 2, 5)
    attn_enhlc = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    attn_emd = attn_enhlc.permute(0, 1, 3, 2, 4).reshape(n_experts, batch * longest, dim)
    h_emd = x_emd + _stacked_linear(attn_emd, [e.attn.out_proj for e in experts])
    h_emd = _stacked_layer_norm(h_emd, [e.ln_1 for e in experts])
    hidden_emf = _stacked_linear(h_emd, [e.ffn[0] for e in experts])
    hidden_emf = hidden_emf * torch.sigmoid(1.702 * hidden_emf)  # QuickGELU
    out_emd = _stacked_layer_norm(h_emd + _stacked_linear(hidden_emf, [e.ffn[2] for e in experts]),
                                  [e.ln_2 for e in experts])
    out_enld = out_emd.view(n_experts, batch, longest, dim)
    return [out_enld[e, :, :length] for e, length in enumerate(lengths)]
