"""Scaled dot-product and multi-head attention, as built in the chapter
`multi_head_attention`.

Conventions (the same as `torch.nn.functional.scaled_dot_product_attention`):
a boolean mask is True where a query may attend to a key.
"""
import math

import torch
from torch import nn


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v for q [..., Tq, dk], k [..., Tk, dk], v [..., Tk, dv].

    Returns (out [..., Tq, dv], weights [..., Tq, Tk]).
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    # -inf before the softmax gives exactly zero weight afterwards and
    # leaves the remaining weights summing to one.
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def split_heads(x, num_heads):
    """[B, T, D] -> [B, h, T, D/h]; head i takes features i*D/h .. (i+1)*D/h - 1."""
    B, T, D = x.shape
    return x.view(B, T, num_heads, D // num_heads).transpose(1, 2)


def merge_heads(x):
    """[B, h, T, dk] -> [B, T, h*dk], the inverse of `split_heads`."""
    B, h, T, d_k = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d_k)


class MultiHeadAttention(nn.Module):
    """h attention heads of size d_model/h, side by side, then one output map."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.attn_weights = None

    def forward(self, query, key, value, mask=None):
        q = split_heads(self.w_q(query), self.num_heads)
        k = split_heads(self.w_k(key), self.num_heads)
        v = split_heads(self.w_v(value), self.num_heads)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # [B, Tq, Tk] -> [B, 1, Tq, Tk]
        out, self.attn_weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(merge_heads(out))


def copy_to_torch_mha(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    """A `torch.nn.MultiheadAttention` holding the same weights as `mha`."""
    d_model = mha.w_q.in_features
    bias = mha.w_q.bias is not None
    ref = nn.MultiheadAttention(d_model, mha.num_heads, bias=bias, batch_first=True)
    with torch.no_grad():
        # PyTorch stores the three input projections stacked in one matrix.
        ref.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
        ref.out_proj.weight.copy_(mha.w_o.weight)
        if bias:
            ref.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
            ref.out_proj.bias.copy_(mha.w_o.bias)
    return ref
