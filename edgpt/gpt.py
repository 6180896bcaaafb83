"""A small GPT, as built in the chapter `causal_masking`.

Decoder-only: token and position embeddings, a stack of pre-LayerNorm blocks
(causal self-attention, then a feed-forward network, each inside a residual
connection), a final LayerNorm and an output head. The names follow GPT-2 and
nanoGPT (`wte`, `wpe`, `h`, `ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp`,
`ln_f`, `lm_head`), so a GPT-2 parameter name reads the same here.

Conventions as in `edgpt.attention`: a boolean mask is True where a query may
attend to a key.
"""
import math

import torch
from torch import nn

from edgpt.attention import merge_heads, scaled_dot_product_attention, split_heads
from edgpt.feed_forward import PositionwiseFeedForward


def causal_mask(T):
    """bool [T, T]: True where the key position (column) is at or before the
    query position (row); the diagonal is True, a position sees itself."""
    return torch.ones(T, T, dtype=torch.bool).tril()


def lm_inputs_and_targets(tokens):
    """tokens [B, T+1] -> (inputs [B, T], targets [B, T]): the target at every
    position is the token that follows it."""
    return tokens[:, :-1], tokens[:, 1:]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t only.

    `c_attn` computes queries, keys and values in one product (its output is
    q, then k, then v, d_model features each); `c_proj` is the output map.
    """

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=-1)
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D // self.num_heads)
        scores = scores.masked_fill(~causal_mask(T).to(x.device), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.c_proj(merge_heads(weights @ v))


class CachedSelfAttention(CausalSelfAttention):
    """`CausalSelfAttention` that can also continue a sequence, for generation.

    `forward(x, cache)`: with `cache` (a dict, empty at first) the keys and
    values of `x` are appended to those already in the cache, and the queries
    of `x` attend to all of them: feeding a sequence in pieces gives the same
    output as feeding it whole, and without a cache the same output as
    `CausalSelfAttention` (tests/test_causal_masking.py checks both).
    """

    def forward(self, x, cache=None):
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=-1)
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))  # [B, h, T, d_k]
        if cache is not None:
            if cache:  # keys and values of the earlier positions
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        out, _ = scaled_dot_product_attention(q, k, v, self.attention_mask(k.size(2) - T, T, x.device))
        return self.c_proj(merge_heads(out))

    def attention_mask(self, T_past, T, device):
        """Which keys the queries of the T new positions may see, after T_past
        cached ones: the last T rows of the causal mask of T_past + T positions."""
        return causal_mask(T_past + T).to(device)[T_past:]


class Block(nn.Module):
    """Pre-LN Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CachedSelfAttention(d_model, num_heads)
        self.ln_2 = nn.LayerNorm(d_model)
        # GPT-2 calls the two maps mlp.c_fc and mlp.c_proj; here they are
        # mlp.linear1 and mlp.linear2 of the feed-forward chapter's module.
        self.mlp = PositionwiseFeedForward(d_model, 4 * d_model, activation="gelu")

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token ids [B, T] -> next-token logits [B, T, vocab_size], T <= max_len.

    `forward(idx, cache)`: `cache` is `None` or a list from `new_cache()`; with
    it, `idx` continues the positions already in the cache.
    """

    def __init__(self, vocab_size, max_len, d_model, n_layer, num_heads, tie_embeddings=True):
        super().__init__()
        self.max_len = max_len
        self.wte = nn.Embedding(vocab_size, d_model)  # token embedding
        self.wpe = nn.Embedding(max_len, d_model)     # learned position embedding
        self.h = nn.ModuleList(Block(d_model, num_heads) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            # One matrix serves as input embedding and output head.
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        # GPT-2's initialisation: small normal weights, zero biases.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self):
        """An empty key/value cache: one dict per block."""
        return [{} for _ in self.h]

    def forward(self, idx, cache=None):
        B, T = idx.shape
        start = cache[0]["k"].size(2) if cache and cache[0] else 0
        if start + T > self.max_len:
            raise ValueError(f"{start + T} positions, but max_len is {self.max_len}")
        positions = torch.arange(start, start + T, device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for i, block in enumerate(self.h):
            x = block(x, None if cache is None else cache[i])
        return self.lm_head(self.ln_f(x))


@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    """Append `max_new_tokens` sampled tokens to `idx` [B, T]; returns [B, T + max_new_tokens].

    Every step runs the model on the last `model.max_len` tokens and samples
    from softmax(logits of the last position / temperature), keeping only the
    `top_k` largest logits when `top_k` is set.
    """
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.max_len:])[:, -1, :]
        if temperature == 0:
            next_token = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth_largest, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            next_token = torch.multinomial(probs, num_samples=1, generator=generator)
        idx = torch.cat([idx, next_token], dim=1)
    return idx


class _FedOnce:
    """`model` seen through a key/value cache: each call runs the model on the
    tokens of `idx` it has not seen yet, so `generate` computes each position once."""

    def __init__(self, model):
        self.model, self.max_len = model, model.max_len
        self.cache, self.seen = model.new_cache(), 0

    def __call__(self, idx):
        new, self.seen = idx[:, self.seen:], idx.size(1)
        return self.model(new, self.cache)


@torch.no_grad()
def generate_with_cache(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    """What `generate` returns, computing each new position only once.

    The prompt runs through the model in one call, filling the key/value cache;
    then each step feeds only the newest token. There is no cropping: the
    prompt and the new tokens must fit in `model.max_len`.
    """
    if idx.size(1) + max_new_tokens > model.max_len:
        raise ValueError("prompt + new tokens exceed model.max_len; use generate(), which crops")
    return generate(_FedOnce(model), idx, max_new_tokens, temperature, top_k, generator)


def gpt2_num_parameters(vocab_size, n_ctx, d_model, n_layer, tie_embeddings=True):
    """Trainable parameters of a GPT-2 layout model, counted from its sizes."""
    d = d_model
    embeddings = vocab_size * d + n_ctx * d             # wte + wpe
    layer_norm = 2 * d                                  # a scale and a shift
    attention = (d * 3 * d + 3 * d) + (d * d + d)       # c_attn + c_proj
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)         # c_fc + c_proj, width 4d
    per_layer = 2 * layer_norm + attention + mlp        # ln_1, attn, ln_2, mlp
    head = 0 if tie_embeddings else vocab_size * d      # lm_head, no bias
    return embeddings + n_layer * per_layer + layer_norm + head  # + ln_f
