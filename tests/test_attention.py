"""Grading of the `attention` assignment (Bahdanau attention) with the course's
grader (see tests/test_multi_head_attention.py for what each test promises).

This assignment also has a written answer, `written_answer`, graded by hand and
not part of the automatic total. The last tests check the book's module
`edgpt.seq2seq` against the solution.
"""
import pytest

from grading import catalog_tests, solution_namespace

ASSIGNMENT = "attention"
# Automatic points: scores 1 + 3, masked_softmax 1 + 3, attention_context 1 + 2.
MAX_POINTS = 11.0
# The written answer, worth 2 points, graded by hand.
WRITTEN = "written_answer"

SCORES = "scores"
SOFTMAX = "masked_softmax"
CONTEXT = "attention_context"

# Each mistake is the solution with one edit: name -> (answer cell,
# [(solution text, replaced by)], test cell that must lose its points, words
# its failure message must contain).
WRONG = {
    "scores_swap_W_s_and_W_h": (SCORES, [
        ("(s_prev @ W_s)", "(s_prev @ W_h)"),
        ("H @ W_h", "H @ W_s"),
    ], "test_scores_hidden", "W_s and W_h swapped"),
    "scores_without_tanh": (SCORES, [("torch.tanh(query + keys) @ v", "(query + keys) @ v")],
                            "test_scores_hidden", "tanh is missing"),
    "scores_tanh_after_v": (SCORES, [("torch.tanh(query + keys) @ v", "torch.tanh((query + keys) @ v)")],
                            "test_scores_hidden", "tanh is applied after v"),
    "scores_query_not_broadcast": (SCORES, [("(s_prev @ W_s).unsqueeze(1)", "(s_prev @ W_s)")],
                                   "test_scores_hidden", "unsqueeze(1)"),
    "scores_returns_softmax": (SCORES, [("return torch.tanh(query + keys) @ v",
                                         "return torch.softmax(torch.tanh(query + keys) @ v, dim=-1)")],
                               "test_scores_hidden", "not their softmax"),
    "softmax_over_batch_axis": (SOFTMAX, [("torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=0)")],
                                "test_masked_softmax_hidden", "softmax over the batch axis"),
    "softmax_mask_ignored": (SOFTMAX, [
        ('    scores = scores.masked_fill(~mask, float("-inf"))\n', ""),
        ("    return weights.masked_fill(~mask, 0.0)", "    return weights"),
    ], "test_masked_softmax_hidden", "masked positions get weight"),
    "softmax_mask_inverted": (SOFTMAX, [
        ('scores.masked_fill(~mask, float("-inf"))', 'scores.masked_fill(mask, float("-inf"))'),
        ("weights.masked_fill(~mask, 0.0)", "weights.masked_fill(mask, 0.0)"),
    ], "test_masked_softmax_hidden", "mask is inverted"),
    "softmax_fully_masked_row_nan": (SOFTMAX, [("    return weights.masked_fill(~mask, 0.0)", "    return weights")],
                                     "test_masked_softmax_hidden", "a fully masked row gives NaN: return zeros"),
    "softmax_fully_masked_row_uniform": (SOFTMAX, [
        ('float("-inf")', "-1e9"),
        ("    return weights.masked_fill(~mask, 0.0)", "    return weights"),
    ], "test_masked_softmax_hidden", "must give all zeros"),
    "softmax_mask_after_softmax": (SOFTMAX, [('    scores = scores.masked_fill(~mask, float("-inf"))\n', "")],
                                   "test_masked_softmax_hidden", "after the softmax without renormalising"),
    "context_sums_over_features": (CONTEXT, [(".sum(dim=1)", ".sum(dim=-1)")],
                                   "test_context_hidden", "sums over the wrong axis"),
    "context_sums_over_batch": (CONTEXT, [(".sum(dim=1)", ".sum(dim=0)")],
                                "test_context_hidden", "sums over the wrong axis"),
    "context_weights_not_broadcast": (CONTEXT, [("weights.unsqueeze(-1) * H", "weights * H")],
                                      "test_context_hidden", "not broadcast over the feature dimension"),
    "context_mean_instead_of_sum": (CONTEXT, [(".sum(dim=1)", ".mean(dim=1)")],
                                    "test_context_hidden", "weighted sum"),
    "context_softmax_again": (CONTEXT, [("weights.unsqueeze(-1) * H", "torch.softmax(weights, dim=-1).unsqueeze(-1) * H")],
                              "test_context_hidden", "softmax is applied to the weights again"),
}

# Correct, but written differently from the solution: each must get full marks.
CORRECT = {
    "einsum_where_bmm": {
        SCORES: '''
def additive_attention_scores(s_prev, H, W_s, W_h, v):
    hidden = torch.tanh(torch.einsum("bs,sa->ba", s_prev, W_s)[:, None, :]
                        + torch.einsum("bth,ha->bta", H, W_h))
    return torch.einsum("bta,a->bt", hidden, v)
''',
        SOFTMAX: '''
def masked_softmax(scores, mask):
    allowed = mask.expand_as(scores)
    filled = torch.where(allowed, scores, torch.full_like(scores, -float("inf")))
    weights = F.softmax(filled, dim=-1)
    return torch.where(allowed, weights, torch.zeros_like(weights))
''',
        CONTEXT: '''
def attention_context(weights, H):
    return torch.bmm(weights.unsqueeze(1), H).squeeze(1)
''',
    },
    "loops_manual_softmax_and_a_warning": {
        SCORES: '''
def additive_attention_scores(s_prev, H, W_s, W_h, v):
    B, T, _ = H.shape
    e = torch.empty(B, T, dtype=H.dtype)
    for b in range(B):
        q = s_prev[b] @ W_s
        for i in range(T):
            e[b, i] = torch.dot(v, torch.tanh(q + H[b, i] @ W_h))
    return e
''',
        SOFTMAX: '''
import warnings

def masked_softmax(scores, mask):
    # A warning on every call must not cost marks.
    warnings.warn("masked_softmax computes the softmax by hand", RuntimeWarning)
    allowed = mask.expand(scores.shape)
    top = torch.where(allowed, scores, torch.tensor(-1e30)).amax(dim=-1, keepdim=True)
    e = torch.where(allowed, torch.exp(scores - top), torch.tensor(0.0))
    total = e.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, e / total.clamp_min(1e-30), torch.zeros_like(e))
''',
        CONTEXT: '''
def attention_context(weights, H):
    c = torch.zeros(H.shape[0], H.shape[2], dtype=H.dtype)
    for i in range(H.shape[1]):
        c = c + weights[:, i:i + 1] * H[:, i, :]
    print("summed", H.shape[1], "positions")  # output on stdout is harmless
    return c
''',
    },
    "matmul_large_negative_fill_and_transpose": {
        SCORES: '''
def additive_attention_scores(s_prev, H, W_s, W_h, v):
    pre = torch.matmul(H, W_h) + torch.matmul(s_prev, W_s).unsqueeze(-2)
    return torch.matmul(torch.tanh(pre), v.unsqueeze(-1)).squeeze(-1)
''',
        SOFTMAX: '''
def masked_softmax(scores, mask):
    # A large negative number instead of -inf: exp underflows to exactly 0.
    weights = torch.softmax(scores.masked_fill(mask.logical_not(), -1e9), dim=-1)
    # A row with nothing allowed came out uniform: zero it, with everything masked.
    return weights * mask
''',
        CONTEXT: '''
def attention_context(weights, H):
    return (H.transpose(1, 2) @ weights.unsqueeze(-1)).squeeze(-1)
''',
    },
}


globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT, items=(SCORES, SOFTMAX, CONTEXT),
                               time_limit=60, written=(WRITTEN,)))


@pytest.mark.slow
def test_written_answer_is_worth_two_points(graded):
    assert {k: w["max"] for k, w in graded["solution"]["written"].items()} == {WRITTEN: 2.0}


# ------------------------------------------------------ the book's module
# edgpt.seq2seq holds the reference functions the book shows and trains with:
# they must agree with the solution's, and the model must ignore padding.

def test_book_module_matches_the_solution():
    import torch

    from edgpt import seq2seq

    sol = solution_namespace(ASSIGNMENT)
    g = torch.Generator().manual_seed(0)
    s, H = torch.randn(3, 5, generator=g), torch.randn(3, 7, 6, generator=g)
    W_s, W_h, v = torch.randn(5, 4, generator=g), torch.randn(6, 4, generator=g), torch.randn(4, generator=g)
    e = seq2seq.additive_attention_scores(s, H, W_s, W_h, v)
    assert torch.allclose(e, sol["additive_attention_scores"](s, H, W_s, W_h, v))
    mask = torch.rand(3, 7, generator=g) > 0.5
    mask[1] = False
    w = seq2seq.masked_softmax(e, mask)
    assert torch.equal(w, sol["masked_softmax"](e, mask)) and torch.equal(w[1], torch.zeros(7))
    assert torch.allclose(seq2seq.attention_context(w, H), sol["attention_context"](w, H))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_seq2seq_ignores_padding(bidirectional):
    import torch

    from edgpt.seq2seq import VOCAB, Seq2Seq, reversal_batch, shift_right

    torch.manual_seed(0)
    model = Seq2Seq(VOCAB, VOCAB, attention=True, bidirectional=bidirectional).eval()
    src, src_len, tgt, tgt_len = reversal_batch(4, 2, 9, torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = model(src, src_len, shift_right(tgt))
        weights = model.attn_weights
        for b in range(4):
            S, T = int(src_len[b]), int(tgt_len[b])
            assert torch.all(weights[b, :, S:] == 0), "padding received attention"
            alone = model(src[b:b + 1, :S], src_len[b:b + 1], shift_right(tgt[b:b + 1, :T]))
            assert torch.allclose(batched[b, :T], alone[0], atol=1e-5)
