"""Grading of the `multi_head_attention` assignment with the course's grader
(sandboxed; the assignment's own test cells), checked once more against plain
`nbgrader autograde`.

The solution must get full marks, the untouched release zero, every wrong
implementation in WRONG must lose points in the test it names with a message
that names the mistake, and every differently written correct one in CORRECT
must get full marks.
"""
from grading import catalog_tests

ASSIGNMENT = "multi_head_attention"
MAX_POINTS = 15.0

SDPA = "sdpa"
SPLIT = "split_heads"
MERGE = "merge_heads"
MHA = "mha"

# Each mistake is the solution with one edit: name -> (answer cell,
# [(solution text, replaced by)], test cell that must lose its points, words
# its failure message must contain).
WRONG = {
    "sdpa_without_sqrt_dk": (SDPA, [(" / math.sqrt(d_k)", "")],
                             "test_sdpa_hidden", "not divided by sqrt(d_k)"),
    "sdpa_divides_by_dk": (SDPA, [("math.sqrt(d_k)", "d_k")],
                           "test_sdpa_hidden", "divided by d_k"),
    "sdpa_softmax_over_queries": (SDPA, [("dim=-1", "dim=-2")],
                                  "test_sdpa_hidden", "softmax over the wrong axis"),
    "sdpa_mask_after_softmax": (SDPA, [
        ("    if mask is not None:\n        scores = scores.masked_fill(~mask, float(\"-inf\"))\n", ""),
        ("    return weights @ v",
         "    if mask is not None:\n        weights = weights.masked_fill(~mask, 0.0)\n    return weights @ v"),
    ], "test_sdpa_hidden", "before the softmax"),
    "sdpa_mask_inverted": (SDPA, [("masked_fill(~mask", "masked_fill(mask")],
                           "test_sdpa_hidden", "mask is inverted"),
    "split_reshape_without_transpose": (SPLIT, [
        ("x.view(B, T, num_heads, D // num_heads).transpose(1, 2)",
         "x.reshape(B, num_heads, T, D // num_heads)"),
    ], "test_split_heads_hidden", "view as [B, T, h, D/h], then transpose"),
    "split_forgets_transpose": (SPLIT, [(".transpose(1, 2)", "")],
                                "test_split_heads_hidden", "heads come before time"),
    "split_interleaves_features": (SPLIT, [
        ("x.view(B, T, num_heads, D // num_heads).transpose(1, 2)",
         "x.view(B, T, D // num_heads, num_heads).permute(0, 3, 1, 2)"),
    ], "test_split_heads_hidden", "contiguous features"),
    "merge_reshape_without_transpose": (MERGE, [("x.transpose(1, 2).reshape", "x.reshape")],
                                        "test_merge_heads_hidden", "transpose(1, 2) first"),
    "merge_interleaves_heads": (MERGE, [("x.transpose(1, 2).reshape", "x.permute(0, 2, 3, 1).reshape")],
                                "test_merge_heads_hidden", "interleaved"),
    "merge_keeps_heads_apart": (MERGE, [(".reshape(B, T, h * d_k)", "")],
                                "test_merge_heads_hidden", "expected [B, T, h*d_k]"),
    "mha_without_output_projection": (MHA, [("return self.w_o(merge_heads(out))", "return merge_heads(out)")],
                                      "test_mha_hidden", "w_o is not applied"),
    "mha_averages_head_weights": (MHA, [
        ("out, self.attn_weights = scaled_dot_product_attention(q, k, v, mask)",
         "out, weights = scaled_dot_product_attention(q, k, v, mask)\n"
         "        self.attn_weights = weights.mean(dim=1)"),
    ], "test_mha_hidden", "do not average over heads"),
    "mha_values_from_w_k": (MHA, [("self.w_v(value)", "self.w_k(value)")],
                            "test_mha_hidden", "projected with w_k"),
    "mha_ignores_mask": (MHA, [("scaled_dot_product_attention(q, k, v, mask)",
                                "scaled_dot_product_attention(q, k, v)")],
                         "test_mha_hidden", "mask is ignored"),
    "mha_no_divisibility_check": (MHA, [
        ("        if d_model % num_heads != 0:\n"
         "            raise ValueError(f\"d_model={d_model} is not divisible by num_heads={num_heads}\")\n", ""),
    ], "test_mha_visible", "should raise ValueError"),
}

# Correct, but written differently from the solution: each must get full marks.
CORRECT = {
    "einsum_where_chunk_and_head_loop": {
        SDPA: '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = torch.einsum("...qd,...kd->...qk", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    weights = F.softmax(scores, dim=-1)
    return torch.einsum("...qk,...kd->...qd", weights, v), weights
''',
        SPLIT: '''
def split_heads(x, num_heads):
    return torch.stack(x.chunk(num_heads, dim=-1), dim=1)
''',
        MERGE: '''
def merge_heads(x):
    return torch.cat(x.unbind(dim=1), dim=-1)
''',
        MHA: '''
class MultiHeadAttention(nn.Module):
    """One head at a time, slicing the projection outputs, then concatenating."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError("num_heads must divide d_model")
        self.h, self.d_k = num_heads, d_model // num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (
            nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def forward(self, query, key, value, mask=None):
        q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
        outs, maps = [], []
        for i in range(self.h):
            part = slice(i * self.d_k, (i + 1) * self.d_k)
            o, w = scaled_dot_product_attention(q[..., part], k[..., part], v[..., part], mask)
            outs.append(o)
            maps.append(w)
        self.attn_weights = torch.stack(maps, dim=1)
        return self.w_o(torch.cat(outs, dim=-1))
''',
    },
    "manual_softmax_permute_and_warnings": {
        SDPA: '''
import warnings

def scaled_dot_product_attention(q, k, v, mask=None):
    # A warning on every call must not cost marks.
    warnings.warn("this implementation computes the softmax by hand", UserWarning)
    scores = torch.matmul(q, k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), -float("inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    e = scores.exp()
    weights = e / e.sum(dim=-1, keepdim=True)
    return torch.matmul(weights, v), weights
''',
        SPLIT: '''
def split_heads(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, -1).permute(0, 2, 1, 3)
''',
        MERGE: '''
def merge_heads(x):
    B, h, T, d_k = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, -1)
''',
        MHA: '''
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"{d_model} % {num_heads} != 0")
        self.heads = num_heads
        self.w_q = nn.Linear(d_model, d_model, bias)
        self.w_k = nn.Linear(d_model, d_model, bias)
        self.w_v = nn.Linear(d_model, d_model, bias)
        self.w_o = nn.Linear(d_model, d_model, bias)

    def forward(self, query, key, value, mask=None):
        heads = [split_heads(F.linear(t, lin.weight, lin.bias), self.heads)
                 for t, lin in ((query, self.w_q), (key, self.w_k), (value, self.w_v))]
        out, weights = scaled_dot_product_attention(*heads, mask=mask)
        self.attn_weights = weights
        print("forward ran")  # output on stdout is harmless
        return F.linear(merge_heads(out), self.w_o.weight, self.w_o.bias)
''',
    },
}


globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT, items=(SDPA, SPLIT, MERGE, MHA), time_limit=60,
                              compare_with_nbgrader=True))
