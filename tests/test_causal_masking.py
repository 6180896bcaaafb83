"""Grading of the `causal_masking` assignment with the course's grader (see
tests/test_multi_head_attention.py for what each test promises), and direct
tests of the GPT in `edgpt.gpt` that the book chapter uses."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgpt.gpt import (GPT, CachedSelfAttention, CausalSelfAttention, causal_mask, generate, generate_with_cache,
                       gpt2_num_parameters, lm_inputs_and_targets)
from grading import catalog_tests, solution_namespace

ASSIGNMENT = "causal_masking"
MAX_POINTS = 19.0

MASK = "causal_mask"
LM = "lm_inputs_and_targets"
CSA = "causal_self_attention"
GEN = "generate"
COUNT = "gpt2_num_parameters"

# name -> (answer cell, [(solution text, replaced by)], test cell that must
# lose its points, words its failure message must contain)
WRONG = {
    "mask_without_diagonal": (MASK, [(".tril()", ".tril(diagonal=-1)")],
                              "test_causal_mask_hidden", "a position must be able to attend to itself"),
    "mask_transposed": (MASK, [(".tril()", ".triu()")],
                        "test_causal_mask_hidden", "True where the key position (column) is at or before"),
    "mask_inverted": (MASK, [("return torch.ones", "return ~torch.ones")],
                      "test_causal_mask_hidden", "the mask is inverted"),
    "mask_of_floats": (MASK, [(", dtype=torch.bool", "")],
                       "test_causal_mask_visible", "bool tensor"),
    "targets_not_shifted": (LM, [("return tokens[:, :-1], tokens[:, 1:]", "return tokens[:, :-1], tokens[:, :-1]")],
                            "test_lm_inputs_and_targets_hidden", "targets are not shifted"),
    "inputs_and_targets_swapped": (LM, [("return tokens[:, :-1], tokens[:, 1:]", "return tokens[:, 1:], tokens[:, :-1]")],
                                   "test_lm_inputs_and_targets_hidden", "swapped"),
    "targets_shifted_the_wrong_way": (LM, [("return tokens[:, :-1], tokens[:, 1:]",
                                            "return tokens[:, :-1], tokens.roll(1, dims=1)[:, :-1]")],
                                      "test_lm_inputs_and_targets_hidden", "shifted the wrong way"),
    "batch_dimension_sliced": (LM, [("return tokens[:, :-1], tokens[:, 1:]", "return tokens[:-1], tokens[1:]")],
                               "test_lm_inputs_and_targets_hidden", "batch dimension was sliced"),
    "attention_without_mask": (CSA, [('        scores = scores.masked_fill(~causal_mask(T).to(x.device), float("-inf"))\n', "")],
                               "test_causal_self_attention_hidden", "changes when a later input changes"),
    "attention_kqv_order": (CSA, [("q, k, v = self.c_attn(x).split(D, dim=-1)", "k, q, v = self.c_attn(x).split(D, dim=-1)")],
                            "test_causal_self_attention_hidden", "wrong order"),
    "attention_heads_without_transpose": (CSA, [("(split_heads(t, self.num_heads) for t in (q, k, v))",
                                                 "(t.reshape(B, self.num_heads, T, D // self.num_heads) for t in (q, k, v))")],
                                          "test_causal_self_attention_hidden", "then transpose(1, 2)"),
    "attention_without_c_proj": (CSA, [("return self.c_proj(merge_heads(weights @ v))", "return merge_heads(weights @ v)")],
                                 "test_causal_self_attention_hidden", "c_proj is not applied"),
    "attention_without_scale": (CSA, [(" / math.sqrt(D // self.num_heads)", "")],
                                "test_causal_self_attention_hidden", "not divided by sqrt(d_k)"),
    "attention_scaled_by_d_model": (CSA, [("math.sqrt(D // self.num_heads)", "math.sqrt(D)")],
                                    "test_causal_self_attention_hidden", "divided by sqrt(d_model)"),
    "attention_diagonal_masked": (CSA, [("~causal_mask(T)", "~causal_mask(T).tril(diagonal=-1)")],
                                  "test_causal_self_attention_hidden", "a position must be able to attend to itself"),
    "top_k_keeps_k_plus_one": (GEN, [("torch.topk(logits, top_k, dim=-1)", "torch.topk(logits, top_k + 1, dim=-1)")],
                               "test_generate_hidden", "a token outside the top k was sampled"),
    "temperature_after_softmax": (GEN, [
        ("            logits = logits / temperature\n", ""),
        ("probs = torch.softmax(logits, dim=-1)", "probs = torch.softmax(logits, dim=-1) / temperature"),
    ], "test_generate_hidden", "before the softmax"),
    "no_cropping": (GEN, [("model(idx[:, -model.max_len:])", "model(idx)")],
                    "test_generate_hidden", "crop the context to the last model.max_len tokens"),
    "cropping_the_first_tokens": (GEN, [("idx[:, -model.max_len:]", "idx[:, :model.max_len]")],
                                  "test_generate_hidden", "keep the last ones"),
    "generator_ignored": (GEN, [("num_samples=1, generator=generator)", "num_samples=1)")],
                          "test_generate_hidden", "the generator is ignored"),
    "temperature_zero_divides": (GEN, [("if temperature == 0:", "if False:")],
                                 "test_generate_hidden", "temperature=0 must mean arg-max"),
    "prefix_not_kept": (GEN, [("    return idx\n", "    return idx[:, -max_new_tokens:]\n")],
                        "test_generate_hidden", "prefix"),
    "count_without_ln_f": (COUNT, [("n_layer * per_layer + layer_norm + head", "n_layer * per_layer + head")],
                           "test_gpt2_num_parameters_hidden", "final LayerNorm ln_f is not counted"),
    "count_without_wpe": (COUNT, [("vocab_size * d + n_ctx * d", "vocab_size * d")],
                          "test_gpt2_num_parameters_hidden", "position embeddings"),
    "count_tied_head_twice": (COUNT, [("head = 0 if tie_embeddings else vocab_size * d", "head = vocab_size * d")],
                              "test_gpt2_num_parameters_hidden", "count that matrix once"),
    "count_untied_head_missing": (COUNT, [("head = 0 if tie_embeddings else vocab_size * d", "head = 0")],
                                  "test_gpt2_num_parameters_hidden", "separate vocab_size x d_model matrix"),
    "count_without_mlp_biases": (COUNT, [("mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)", "mlp = d * 4 * d + 4 * d * d")],
                                 "test_gpt2_num_parameters_hidden", "MLP biases are not counted"),
    "count_without_layer_norm_shifts": (COUNT, [("layer_norm = 2 * d", "layer_norm = d")],
                                        "test_gpt2_num_parameters_hidden", "LayerNorm biases"),
}

CORRECT = {
    "comparisons_sdpa_gumbel_and_closed_form": {
        MASK: '''
def causal_mask(T):
    positions = torch.arange(T)
    return positions[None, :] <= positions[:, None]  # key <= query
''',
        LM: '''
def lm_inputs_and_targets(tokens):
    inputs = tokens.narrow(1, 0, tokens.size(1) - 1)
    targets = tokens.roll(-1, dims=1)[:, :-1]  # the next token, wrap-around cut off
    return inputs, targets
''',
        CSA: '''
class CausalSelfAttention(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.h = num_heads
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = (t.reshape(B, T, self.h, -1).permute(0, 2, 1, 3)
                   for t in self.c_attn(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T))
        return self.c_proj(out.permute(0, 2, 1, 3).reshape(B, T, D))
''',
        GEN: '''
@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    """The Gumbel-max trick: arg-max of logits + Gumbel noise is a softmax sample."""
    new = []
    for _ in range(max_new_tokens):
        context = torch.cat([idx] + new, dim=1)
        context = context[:, max(0, context.size(1) - model.max_len):]
        logits = model(context)[:, -1, :].float()
        if temperature == 0:
            new.append(torch.argmax(logits, dim=-1).unsqueeze(1))
            continue
        logits = logits / temperature
        if top_k is not None:
            order = logits.argsort(dim=-1, descending=True)
            drop = order[:, top_k:]
            logits = logits.scatter(1, drop, float("-inf"))
        u = torch.rand(logits.shape, generator=generator).clamp_min(1e-20)
        gumbel = -torch.log(-torch.log(u))
        new.append(torch.argmax(logits + gumbel, dim=-1, keepdim=True))
    return torch.cat([idx] + new, dim=1)
''',
        COUNT: '''
def gpt2_num_parameters(vocab_size, n_ctx, d_model, n_layer, tie_embeddings=True):
    d = d_model
    per_layer = 12 * d * d + 13 * d  # 4d^2+4d attention, 8d^2+5d MLP, 4d LayerNorms
    total = (vocab_size + n_ctx) * d + n_layer * per_layer + 2 * d
    if not tie_embeddings:
        total += vocab_size * d
    return int(total)
''',
    },
    "loops_inverse_cdf_and_warnings": {
        MASK: '''
import warnings

def causal_mask(T):
    warnings.warn("filling the mask row by row", UserWarning)
    mask = torch.zeros(T, T, dtype=torch.bool)
    for query in range(T):
        mask[query, : query + 1] = True
    return mask
''',
        LM: '''
def lm_inputs_and_targets(tokens):
    T = tokens.shape[1] - 1
    return tokens[:, 0:T].clone(), tokens[:, 1:T + 1].clone()
''',
        CSA: '''
class CausalSelfAttention(nn.Module):
    """One head at a time, with torch.where and a hand-written softmax."""

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.num_heads, self.d_k = num_heads, d_model // num_heads
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        T, D = x.shape[1], x.shape[2]
        qkv = self.c_attn(x)
        q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
        allowed = torch.tril(torch.ones(T, T)).bool()
        heads = []
        for i in range(self.num_heads):
            part = slice(i * self.d_k, (i + 1) * self.d_k)
            scores = torch.einsum("btd,bsd->bts", q[..., part], k[..., part]) / self.d_k ** 0.5
            scores = torch.where(allowed, scores, torch.tensor(float("-inf")))
            e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
            heads.append((e / e.sum(dim=-1, keepdim=True)) @ v[..., part])
        return self.c_proj(torch.cat(heads, dim=-1))
''',
        GEN: '''
import warnings

@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    warnings.warn("sampling by inverting the cumulative distribution", UserWarning)
    out = idx.clone()
    for _ in range(max_new_tokens):
        logits = model(out if out.size(1) <= model.max_len else out[:, out.size(1) - model.max_len:])[:, -1]
        if temperature == 0:
            choice = logits.max(dim=-1).indices[:, None]
        else:
            scaled = logits / temperature
            if top_k is not None:
                keep = torch.zeros_like(scaled, dtype=torch.bool)
                keep.scatter_(1, scaled.topk(top_k, dim=-1).indices, True)
                scaled = scaled.masked_fill(~keep, -math.inf)
            cdf = F.softmax(scaled, dim=-1).cumsum(dim=-1)
            u = torch.rand(cdf.shape[0], 1, generator=generator) * cdf[:, -1:]
            choice = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[1] - 1)
        out = torch.cat((out, choice), dim=1)
    return out
''',
        COUNT: '''
def gpt2_num_parameters(vocab_size, n_ctx, d_model, n_layer, tie_embeddings=True):
    sizes = {
        "wte": vocab_size * d_model,
        "wpe": n_ctx * d_model,
        "ln_f": 2 * d_model,
        "lm_head": 0 if tie_embeddings else d_model * vocab_size,
    }
    layer = {
        "ln_1": 2 * d_model, "ln_2": 2 * d_model,
        "c_attn": d_model * 3 * d_model + 3 * d_model, "attn.c_proj": d_model * d_model + d_model,
        "c_fc": d_model * 4 * d_model + 4 * d_model, "mlp.c_proj": 4 * d_model * d_model + d_model,
    }
    return sum(sizes.values()) + n_layer * sum(layer.values())
''',
    },
}


globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT,
                               items=(MASK, LM, CSA, GEN, COUNT), time_limit=90))


# ------------------------------------------------ the GPT of edgpt.gpt (fast)

@pytest.fixture
def tiny_gpt():
    torch.manual_seed(0)
    model = GPT(vocab_size=11, max_len=24, d_model=32, n_layer=2, num_heads=4).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so differences would show
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def test_kv_cache_logits_equal_full_recomputation(tiny_gpt):
    idx = torch.randint(0, 11, (3, 24))
    with torch.no_grad():
        full = tiny_gpt(idx)
        cache = tiny_gpt.new_cache()
        pieces = [tiny_gpt(idx[:, :5], cache), tiny_gpt(idx[:, 5:6], cache), tiny_gpt(idx[:, 6:17], cache)]
        pieces += [tiny_gpt(idx[:, t:t + 1], cache) for t in range(17, 24)]
    assert cache[0]["k"].shape == (3, 4, 24, 8)
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_cache_refuses_to_run_past_max_len(tiny_gpt):
    cache = tiny_gpt.new_cache()
    with torch.no_grad():
        tiny_gpt(torch.zeros(1, 20, dtype=torch.long), cache)
        with pytest.raises(ValueError):
            tiny_gpt(torch.zeros(1, 5, dtype=torch.long), cache)


@pytest.mark.parametrize("kwargs", [dict(temperature=0), dict(temperature=0.8), dict(temperature=1.0, top_k=3)])
def test_generate_with_cache_gives_the_tokens_of_generate(tiny_gpt, kwargs):
    prompt = torch.randint(0, 11, (4, 3))
    a = generate(tiny_gpt, prompt, 20, generator=torch.Generator().manual_seed(5), **kwargs)
    b = generate_with_cache(tiny_gpt, prompt, 20, generator=torch.Generator().manual_seed(5), **kwargs)
    assert torch.equal(a, b)


def test_generate_is_reproducible_with_a_generator(tiny_gpt):
    prompt = torch.randint(0, 11, (2, 4))
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        runs.append(generate(tiny_gpt, prompt, 40, generator=torch.Generator().manual_seed(9)))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (2, 44) and torch.equal(runs[0][:, :4], prompt)
    other = generate(tiny_gpt, prompt, 40, generator=torch.Generator().manual_seed(10))
    assert not torch.equal(runs[0], other)


def test_generate_crops_to_max_len(tiny_gpt):
    out = generate(tiny_gpt, torch.randint(0, 11, (1, 30)), 5, temperature=0)  # prompt longer than max_len
    assert out.shape == (1, 35)


def test_generate_top_k_and_temperature_follow_the_softmax():
    class Fixed(nn.Module):
        max_len = 4

        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, idx):
            return self.logits.expand(idx.shape[0], idx.shape[1], -1)

    logits = torch.tensor([2.0, 1.0, 0.5, 0.4, -1.0])
    n = 20000
    start = torch.zeros(n, 1, dtype=torch.long)
    out = generate(Fixed(logits), start, 1, temperature=0.5, top_k=3, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(out[:, -1], minlength=5).double() / n
    want = F.softmax(torch.tensor([4.0, 2.0, 1.0, -math.inf, -math.inf], dtype=torch.float64), -1)
    assert freq[3:].sum() == 0
    assert torch.allclose(freq, want, atol=5 * math.sqrt(0.25 / n))


def test_gpt_is_causal(tiny_gpt):
    idx = torch.randint(0, 11, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 11
    with torch.no_grad():
        assert torch.allclose(tiny_gpt(idx)[:, :7], tiny_gpt(changed)[:, :7], atol=1e-6)
        assert not torch.allclose(tiny_gpt(idx)[:, 7:], tiny_gpt(changed)[:, 7:], atol=1e-3)


def test_attention_equals_pytorch_fused_causal_attention():
    torch.manual_seed(1)
    attn = CausalSelfAttention(24, 3).eval()
    x = torch.randn(2, 9, 24)
    with torch.no_grad():
        q, k, v = (t.view(2, 9, 3, 8).transpose(1, 2) for t in attn.c_attn(x).split(24, dim=-1))
        want = attn.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 9, 24))
        assert torch.allclose(attn(x), want, atol=1e-5)


def test_the_gpt_attention_is_the_graded_one_with_a_cache():
    # The GPT's blocks use CachedSelfAttention: without a cache it computes
    # what the graded CausalSelfAttention computes; with one, the same in pieces.
    torch.manual_seed(2)
    plain = CausalSelfAttention(24, 3).eval()
    cached = CachedSelfAttention(24, 3).eval()
    cached.load_state_dict(plain.state_dict())
    x = torch.randn(2, 9, 24)
    with torch.no_grad():
        want = plain(x)
        assert torch.allclose(cached(x), want, atol=1e-6)
        cache = {}
        pieces = torch.cat([cached(x[:, :4], cache), cached(x[:, 4:5], cache), cached(x[:, 5:], cache)], dim=1)
        assert torch.allclose(pieces, want, atol=1e-5) and cache["k"].size(2) == 9


@pytest.mark.parametrize("sizes", [(50257, 1024, 768, 12), (97, 33, 40, 3), (5, 8, 8, 1)])
@pytest.mark.parametrize("tie", [True, False])
def test_gpt2_num_parameters_counts_the_module(sizes, tie):
    vocab, n_ctx, d, layers = sizes
    with torch.device("meta"):
        model = GPT(vocab, n_ctx, d, layers, num_heads=4 if d % 4 == 0 else 1, tie_embeddings=tie)
    assert gpt2_num_parameters(vocab, n_ctx, d, layers, tie_embeddings=tie) == sum(
        p.numel() for p in model.parameters())


def test_gpt2_small():
    assert gpt2_num_parameters(50257, 1024, 768, 12) == 124_439_808
    assert gpt2_num_parameters(50257, 1024, 768, 12, tie_embeddings=False) == 124_439_808 + 50257 * 768


def test_mask_and_targets():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    tokens = torch.arange(10).view(2, 5)
    inputs, targets = lm_inputs_and_targets(tokens)
    assert torch.equal(inputs, tokens[:, :-1]) and torch.equal(targets, tokens[:, 1:])


def test_the_assignment_solution_agrees_with_edgpt():
    """The graded solution and the package the book imports compute the same things."""
    from edgpt.attention import merge_heads, split_heads

    ns = solution_namespace(ASSIGNMENT, split_heads=split_heads, merge_heads=merge_heads)
    for T in (1, 4, 9):
        assert torch.equal(ns["causal_mask"](T), causal_mask(T))
    tokens = torch.randint(0, 50, (3, 8))
    assert all(torch.equal(a, b) for a, b in zip(ns["lm_inputs_and_targets"](tokens), lm_inputs_and_targets(tokens)))
    torch.manual_seed(0)
    theirs, ours = ns["CausalSelfAttention"](16, 4), CausalSelfAttention(16, 4)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        assert torch.allclose(theirs(x), ours(x), atol=1e-6)
    model = GPT(13, 8, 16, 1, 2).eval()
    prompt = torch.randint(0, 13, (3, 2))
    for kwargs in [dict(temperature=0), dict(temperature=0.7, top_k=4)]:
        a = ns["generate"](model, prompt, 12, generator=torch.Generator().manual_seed(2), **kwargs)
        b = generate(model, prompt, 12, generator=torch.Generator().manual_seed(2), **kwargs)
        assert torch.equal(a, b)
    for sizes in [(50257, 1024, 768, 12), (30, 7, 16, 2)]:
        for tie in (True, False):
            assert ns["gpt2_num_parameters"](*sizes, tie_embeddings=tie) == gpt2_num_parameters(*sizes, tie_embeddings=tie)
