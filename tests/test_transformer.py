"""Grading of the `transformer` assignment with the course's grader (see
tests/test_multi_head_attention.py for what each test promises), and direct
tests of `edgpt.transformer`, which the book chapter and the capstone use."""
import pytest
import torch
from torch import nn

from edgpt.transformer import (DecoderLayer, EncoderLayer, Transformer, copy_to_torch_decoder_layer,
                               copy_to_torch_encoder_layer, padding_mask, transformer_num_parameters)
from grading import catalog_tests, solution_namespace

ASSIGNMENT = "transformer"
MAX_POINTS = 14.0

ENC = "encoder_layer"
DEC = "decoder_layer"
COUNT = "transformer_num_parameters"

ENC_HIDDEN, DEC_HIDDEN, COUNT_HIDDEN = "test_encoder_layer_hidden", "test_decoder_layer_hidden", \
    "test_transformer_num_parameters_hidden"

# name -> (answer cell, [(solution text, replaced by)], test cell that must
# lose its points, words its failure message must contain)
WRONG = {
    # ---------------------------------------------------------------- encoder
    "enc_pre_and_post_swapped": (ENC, [("        if self.norm_first:\n", "        if not self.norm_first:\n")],
                                 "test_encoder_layer_visible", "norm_first=False (post-LN)"),
    "enc_no_residual_around_ffn": (ENC, [("return self.norm2(x + self.ffn(x))", "return self.norm2(self.ffn(x))")],
                                   ENC_HIDDEN, "residual connection around the feed-forward network is missing"),
    "enc_norm_before_residual_add": (ENC, [
        ("x = self.norm1(x + self.self_attn(x, x, x, mask))", "x = x + self.norm1(self.self_attn(x, x, x, mask))"),
        ("return self.norm2(x + self.ffn(x))", "return x + self.norm2(self.ffn(x))"),
    ], ENC_HIDDEN, "normalised before the residual add"),
    "enc_same_layer_norm_twice": (ENC, [("return self.norm2(x + self.ffn(x))", "return self.norm1(x + self.ffn(x))")],
                                  ENC_HIDDEN, "the same LayerNorm is used for both sub-layers"),
    "enc_one_layer_norm_module": (ENC, [("self.norm2 = nn.LayerNorm(d_model)", "self.norm2 = self.norm1")],
                                  "test_encoder_layer_visible", "two separate LayerNorms"),
    "enc_mask_ignored": (ENC, [("self.self_attn(x, x, x, mask)", "self.self_attn(x, x, x)")],
                         ENC_HIDDEN, "the mask is ignored"),
    "enc_pre_ln_keys_not_normalised": (ENC, [("x = x + self.self_attn(h, h, h, mask)", "x = x + self.self_attn(h, x, x, mask)")],
                                       ENC_HIDDEN, "only the queries are normalised"),
    "enc_pre_ln_output_normalised": (ENC, [("return x + self.ffn(self.norm2(x))", "return self.norm2(x + self.ffn(self.norm2(x)))")],
                                     ENC_HIDDEN, "the output is normalised again"),
    # ---------------------------------------------------------------- decoder
    "dec_cross_attention_reads_y": (DEC, [("self.cross_attn(y, memory, memory, memory_mask)", "self.cross_attn(y, y, y, memory_mask)")],
                                    DEC_HIDDEN, "keys and values from y"),
    "dec_tgt_mask_not_passed": (DEC, [("self.self_attn(y, y, y, tgt_mask)", "self.self_attn(y, y, y)")],
                                DEC_HIDDEN, "tgt_mask is not applied"),
    "dec_memory_mask_ignored": (DEC, [("self.cross_attn(y, memory, memory, memory_mask)", "self.cross_attn(y, memory, memory)")],
                                DEC_HIDDEN, "memory_mask is not applied"),
    "dec_cross_before_self": (DEC, [(
        "        y = self.norm1(y + self.self_attn(y, y, y, tgt_mask))\n"
        "        y = self.norm2(y + self.cross_attn(y, memory, memory, memory_mask))\n",
        "        y = self.norm1(y + self.cross_attn(y, memory, memory, memory_mask))\n"
        "        y = self.norm2(y + self.self_attn(y, y, y, tgt_mask))\n")],
        DEC_HIDDEN, "cross-attention runs before self-attention"),
    "dec_pre_and_post_swapped": (DEC, [("        if self.norm_first:\n", "        if not self.norm_first:\n")],
                                 DEC_HIDDEN, "but norm_first=False asks for post-LN"),
    "dec_no_residual_around_cross_attention": (DEC, [(
        "y = self.norm2(y + self.cross_attn(y, memory, memory, memory_mask))",
        "y = self.norm2(self.cross_attn(y, memory, memory, memory_mask))")],
        DEC_HIDDEN, "residual connection around cross-attention is missing"),
    "dec_norm1_reused_for_ffn": (DEC, [("return self.norm3(y + self.ffn(y))", "return self.norm1(y + self.ffn(y))")],
                                 DEC_HIDDEN, "the same LayerNorm is used for two sub-layers"),
    "dec_norms_swapped": (DEC, [
        ("y = self.norm2(y + self.cross_attn(y, memory, memory, memory_mask))",
         "y = self.norm3(y + self.cross_attn(y, memory, memory, memory_mask))"),
        ("return self.norm3(y + self.ffn(y))", "return self.norm2(y + self.ffn(y))"),
    ], DEC_HIDDEN, "the LayerNorms are not used in order"),
    "dec_pre_ln_memory_normalised": (DEC, [("y = y + self.cross_attn(h, memory, memory, memory_mask)",
                                            "y = y + self.cross_attn(h, self.norm2(memory), self.norm2(memory), memory_mask)")],
                                     DEC_HIDDEN, "memory is normalised with norm2"),
    "dec_cross_attention_with_self_attention_weights": (DEC, [(
        "self.cross_attn(h, memory, memory, memory_mask)", "self.self_attn(h, memory, memory, memory_mask)")],
        DEC_HIDDEN, "uses the weights of self.self_attn"),
    "dec_shared_attention_module": (DEC, [("self.cross_attn = MultiHeadAttention(d_model, num_heads)",
                                           "self.cross_attn = self.self_attn")],
                                    "test_decoder_layer_visible", "two separate modules"),
    # ------------------------------------------------------------------ count
    "count_without_layer_norms": (COUNT, [("norm = 2 * d_model", "norm = 0")],
                                  COUNT_HIDDEN, "the LayerNorms are not counted"),
    "count_layer_norm_scale_only": (COUNT, [("norm = 2 * d_model", "norm = d_model")],
                                    COUNT_HIDDEN, "only one of them is counted"),
    "count_decoder_with_one_attention": (COUNT, [("decoder_layer = 2 * attention", "decoder_layer = attention")],
                                         COUNT_HIDDEN, "a decoder layer has two attention modules"),
    "count_head_bias_when_tied": (COUNT, [("embeddings = vocab_size * d_model\n", "embeddings = vocab_size * d_model + vocab_size\n")],
                                  COUNT_HIDDEN, "has no bias"),
    "count_attention_without_biases": (COUNT, [("attention = 4 * (d_model * d_model + d_model)", "attention = 4 * d_model * d_model")],
                                       COUNT_HIDDEN, "biases of the attention projections"),
    "count_untied_head_without_bias": (COUNT, [("(d_model * vocab_size + vocab_size)", "d_model * vocab_size")],
                                       COUNT_HIDDEN, "has a bias of vocab_size entries"),
    "count_untied_as_two_tables": (COUNT, [("embeddings = 2 * vocab_size * d_model + (d_model * vocab_size + vocab_size)",
                                            "embeddings = 2 * vocab_size * d_model")],
                                   COUNT_HIDDEN, "three vocab_size x d_model matrices"),
    "count_final_layer_norms": (COUNT, [("return n_enc * encoder_layer + n_dec * decoder_layer + embeddings",
                                         "return n_enc * encoder_layer + n_dec * decoder_layer + embeddings + 2 * norm")],
                                COUNT_HIDDEN, "two final LayerNorms are counted"),
    "count_float": (COUNT, [("return n_enc * encoder_layer + n_dec * decoder_layer + embeddings",
                             "return float(n_enc * encoder_layer + n_dec * decoder_layer + embeddings) + 0.5")],
                    "test_transformer_num_parameters_visible", "return an int"),
}

CORRECT = {
    "functional_layer_norm_einsum_attention_and_tables": {
        ENC: '''
def _attend(mha, q_in, kv_in, mask):
    """Multi-head attention from mha's weights, with einsum and a masked softmax."""
    B, Tq, D = q_in.shape
    h = mha.num_heads
    q = F.linear(q_in, mha.w_q.weight, mha.w_q.bias).reshape(B, Tq, h, D // h)
    k = F.linear(kv_in, mha.w_k.weight, mha.w_k.bias).reshape(B, kv_in.shape[1], h, D // h)
    v = F.linear(kv_in, mha.w_v.weight, mha.w_v.bias).reshape(B, kv_in.shape[1], h, D // h)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D // h)
    if mask is not None:
        allowed = mask.unsqueeze(1) if mask.dim() == 3 else mask
        scores = torch.where(allowed, scores, torch.full_like(scores, -math.inf))
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v).reshape(B, Tq, D)
    return F.linear(out, mha.w_o.weight, mha.w_o.bias)


def _norm(module, t):
    return F.layer_norm(t, module.normalized_shape, module.weight, module.bias, module.eps)


class EncoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.pre = bool(norm_first)
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x, mask=None):
        sublayers = {
            "norm1": lambda t: _attend(self.self_attn, t, t, mask),
            "norm2": lambda t: F.linear(F.relu(F.linear(t, self.ffn.linear1.weight, self.ffn.linear1.bias)),
                                        self.ffn.linear2.weight, self.ffn.linear2.bias),
        }
        for norm_name, f in sublayers.items():
            norm = getattr(self, norm_name)
            x = x + f(_norm(norm, x)) if self.pre else _norm(norm, x + f(x))
        return x
''',
        DEC: '''
class DecoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.pre = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, y, memory, tgt_mask=None, memory_mask=None):
        steps = [
            (self.norm1, lambda t: _attend(self.self_attn, t, t, tgt_mask)),
            (self.norm2, lambda t: _attend(self.cross_attn, t, memory, memory_mask)),
            (self.norm3, self.ffn),
        ]
        for norm, f in steps:
            y = y + f(_norm(norm, y)) if self.pre else _norm(norm, y + f(y))
        return y
''',
        COUNT: '''
def transformer_num_parameters(vocab_size, d_model, d_ff, n_enc, n_dec, shared_embeddings=True):
    sizes = {
        "attention": 4 * d_model * d_model + 4 * d_model,
        "ffn": 2 * d_model * d_ff + d_ff + d_model,
        "layer_norm": d_model + d_model,
    }
    per_encoder = sizes["attention"] + sizes["ffn"] + 2 * sizes["layer_norm"]
    per_decoder = 2 * sizes["attention"] + sizes["ffn"] + 3 * sizes["layer_norm"]
    tables = 1 if shared_embeddings else 3
    head_bias = 0 if shared_embeddings else vocab_size
    return int(n_enc * per_encoder + n_dec * per_decoder + tables * vocab_size * d_model + head_bias)
''',
    },
    "explicit_steps_with_warning_and_print": {
        ENC: '''
import warnings


class EncoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, mask=None):
        warnings.warn("EncoderLayer: no dropout in this layer", UserWarning)
        print("encoder layer input", tuple(x.shape))
        if not self.norm_first:
            attended = self.self_attn(x, x, x, mask)
            after_attention = self.norm1(attended + x)
            transformed = self.ffn(after_attention)
            return self.norm2(transformed + after_attention)
        normed = self.norm1(x)
        after_attention = self.self_attn(query=normed, key=normed, value=normed, mask=mask) + x
        return after_attention + self.ffn(self.norm2(after_attention))
''',
        DEC: '''
import warnings


class DecoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def _residual(self, norm, sublayer, t):
        if self.norm_first:
            return t + sublayer(norm(t))
        return norm(t + sublayer(t))

    def forward(self, y, memory, tgt_mask=None, memory_mask=None):
        warnings.warn("DecoderLayer: memory is used as it is", UserWarning)
        print("decoder layer:", tuple(y.shape), "reads memory", tuple(memory.shape))
        y = self._residual(self.norm1, lambda q: self.self_attn(q, q, q, mask=tgt_mask), y)
        y = self._residual(self.norm2, lambda q: self.cross_attn(q, memory, memory, mask=memory_mask), y)
        return self._residual(self.norm3, self.ffn, y)
''',
        COUNT: '''
import warnings


def transformer_num_parameters(vocab_size, d_model, d_ff, n_enc, n_dec, shared_embeddings=True):
    warnings.warn("counting without building the model", UserWarning)
    linear = lambda n_in, n_out, bias=True: n_in * n_out + (n_out if bias else 0)
    layer_norm = 2 * d_model
    attention = sum(linear(d_model, d_model) for _ in ("w_q", "w_k", "w_v", "w_o"))
    ffn = linear(d_model, d_ff) + linear(d_ff, d_model)
    total = n_enc * (attention + ffn + 2 * layer_norm)
    total += n_dec * (attention + attention + ffn + 3 * layer_norm)
    total += vocab_size * d_model                     # the source table, shared or not
    if not shared_embeddings:
        total += vocab_size * d_model + linear(d_model, vocab_size)
    print("counted", total, "parameters")
    return total
''',
    },
}


globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT, items=(ENC, DEC, COUNT), time_limit=90,
                              compare_with_nbgrader=True))


# ---------------------------------------- edgpt.transformer, used by the book (fast)

def _scrambled(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
    return module.eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_layers_equal_pytorch_with_copied_weights(norm_first):
    torch.manual_seed(0)
    src = torch.tensor([[3, 4, 5, 6, 7], [3, 4, 0, 0, 0]])
    x, y = torch.randn(2, 5, 24), torch.randn(2, 4, 24)
    mask = padding_mask(src, 0)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    enc = _scrambled(EncoderLayer(24, 4, 40, norm_first), 1)
    dec = _scrambled(DecoderLayer(24, 4, 40, norm_first), 2)
    with torch.no_grad():
        memory = enc(x, mask)
        want = copy_to_torch_encoder_layer(enc)(x, src_key_padding_mask=~mask[:, 0])
        assert torch.allclose(memory, want, atol=1e-5)
        got = dec(y, memory, causal, mask)
        want = copy_to_torch_decoder_layer(dec)(y, memory, tgt_mask=~causal, memory_key_padding_mask=~mask[:, 0])
        assert torch.allclose(got, want, atol=1e-5)


def test_padding_mask_marks_real_tokens():
    mask = padding_mask(torch.tensor([[5, 6, 0], [0, 7, 0]]), 0)
    assert mask.shape == (2, 1, 3)
    assert mask[:, 0].tolist() == [[True, True, False], [False, True, False]]


def test_transformer_decoder_is_causal_and_ignores_source_padding():
    torch.manual_seed(0)
    model = Transformer(12, 10, 32, 4, 64, 2, 2).eval()
    src = torch.tensor([[4, 5, 6, 0, 0]])
    tgt_in = torch.tensor([[1, 7, 8, 9]])
    with torch.no_grad():
        logits = model(src, tgt_in)
        later = tgt_in.clone()
        later[0, 2] = 3
        assert torch.equal(model(src, later)[:, :2], logits[:, :2])
        assert not torch.allclose(model(src, later)[:, 2:], logits[:, 2:])
        # The padded source tokens are masked in the encoder and in cross-attention.
        assert torch.allclose(model(torch.tensor([[4, 5, 6, 0, 0, 0, 0]]), tgt_in), logits, atol=1e-5)


def test_embeddings_start_at_the_scale_of_the_positions():
    model = Transformer(500, 8, 64, 4, 128, 1, 1, shared_vocab=False)
    for table in (model.src_emb, model.tgt_emb):
        std = (table.weight * 64 ** 0.5).std().item()
        assert 0.9 < std < 1.1


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("sizes", [(37000, 512, 2048, 6, 6), (97, 24, 40, 2, 3), (5, 8, 8, 1, 1)])
def test_transformer_num_parameters_counts_the_module(sizes, shared):
    vocab, d, d_ff, n_enc, n_dec = sizes
    with torch.device("meta"):
        post = Transformer(vocab, 16, d, 4, d_ff, n_enc, n_dec, norm_first=False, shared_vocab=shared)
        pre = Transformer(vocab, 16, d, 4, d_ff, n_enc, n_dec, norm_first=True, shared_vocab=shared)
    count = transformer_num_parameters(vocab, d, d_ff, n_enc, n_dec, shared_embeddings=shared)
    assert count == sum(p.numel() for p in post.parameters())
    assert count + 4 * d == sum(p.numel() for p in pre.parameters())  # the two final LayerNorms


def test_base_model_count():
    assert transformer_num_parameters(37000, 512, 2048, 6, 6) == 63_082_496
    assert transformer_num_parameters(37000, 512, 2048, 6, 6, shared_embeddings=False) == 101_007_496


def test_the_assignment_solution_agrees_with_edgpt():
    """The graded solution and the package the book imports compute the same things."""
    from edgpt.attention import MultiHeadAttention
    from edgpt.feed_forward import PositionwiseFeedForward

    ns = solution_namespace(ASSIGNMENT, MultiHeadAttention=MultiHeadAttention,
                            PositionwiseFeedForward=PositionwiseFeedForward)
    torch.manual_seed(0)
    x, y = torch.randn(2, 6, 16), torch.randn(2, 3, 16)
    causal = torch.ones(3, 3, dtype=torch.bool).tril()
    mask = padding_mask(torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]]), 0)
    for norm_first in (False, True):
        ours, theirs = EncoderLayer(16, 2, 32, norm_first), ns["EncoderLayer"](16, 2, 32, norm_first)
        theirs.load_state_dict(_scrambled(ours, 3).state_dict())
        ours_d, theirs_d = DecoderLayer(16, 2, 32, norm_first), ns["DecoderLayer"](16, 2, 32, norm_first)
        theirs_d.load_state_dict(_scrambled(ours_d, 4).state_dict())
        with torch.no_grad():
            assert torch.allclose(ours(x, mask), theirs(x, mask), atol=1e-6)
            assert torch.allclose(ours_d(y, x, causal, mask), theirs_d(y, x, causal, mask), atol=1e-6)
    for sizes in [(37000, 512, 2048, 6, 6), (30, 8, 12, 2, 1)]:
        for shared in (True, False):
            assert ns["transformer_num_parameters"](*sizes, shared_embeddings=shared) == \
                transformer_num_parameters(*sizes, shared_embeddings=shared)
