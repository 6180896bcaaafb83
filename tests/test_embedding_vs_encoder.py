"""Grading of the `embedding_vs_encoder` assignment with the course's grader (see
tests/test_multi_head_attention.py for what each test promises).

This assignment also has a written answer, `why_embedding_is_not_encoder`,
graded by hand and not part of the automatic total.
"""
from grading import catalog_tests

ASSIGNMENT = "embedding_vs_encoder"
# Automatic points: one_hot_embed 1 + 2, sinusoidal_positional_encoding 1 + 3.
MAX_POINTS = 7.0
# The written answer, worth 2 points, graded by hand.
WRITTEN = "why_embedding_is_not_encoder"

EMBED = "one_hot_embed"
PE = "sinusoidal_positional_encoding"

# Each mistake is the solution with one edit: name -> (answer cell,
# [(solution text, replaced by)], test cell that must lose its points, words
# its failure message must contain).
WRONG = {
    "embed_without_num_classes": (EMBED, [("F.one_hot(token_ids, num_classes=V)", "F.one_hot(token_ids)")],
                                  "test_one_hot_embed_hidden", "num_classes=V"),
    "embed_keeps_integer_one_hot": (EMBED, [(".to(E.dtype)", "")],
                                    "test_one_hot_embed_hidden", "convert it to E's dtype"),
    "embed_flattens_the_ids": (EMBED, [("return one_hot @ E", "return (one_hot @ E).reshape(-1, E.shape[1])")],
                               "test_one_hot_embed_hidden", "must keep the shape token_ids.shape + (D,)"),
    "embed_transposed_product": (EMBED, [("return one_hot @ E", "return E.T @ one_hot.transpose(-2, -1)")],
                                 "test_one_hot_embed_hidden", "the result is transposed"),
    "embed_detaches_the_table": (EMBED, [("return one_hot @ E", "return one_hot @ E.detach()")],
                                 "test_one_hot_embed_hidden", "no gradient reaches the table"),
    "pe_sin_cos_swapped": (PE, [("pe[:, 0::2] = torch.sin(angles)", "pe[:, 0::2] = torch.cos(angles)"),
                                ("pe[:, 1::2] = torch.cos(angles)", "pe[:, 1::2] = torch.sin(angles)")],
                           "test_positional_encoding_hidden", "sin and cos are swapped"),
    "pe_exponent_i_instead_of_2i": (PE, [("torch.arange(0, d_model, 2, dtype", "torch.arange(0, d_model // 2, dtype")],
                                    "test_positional_encoding_hidden", "uses i instead of 2i"),
    "pe_exponent_per_feature": (PE, [
        ("two_i = torch.arange(0, d_model, 2, dtype=torch.float32)",
         "j = torch.arange(d_model, dtype=torch.float32)"),
        ("10000 ** (two_i / d_model)", "10000 ** (j / d_model)"),
        ("torch.sin(angles)", "torch.sin(angles[:, 0::2])"),
        ("torch.cos(angles)", "torch.cos(angles[:, 1::2])"),
    ], "test_positional_encoding_hidden", "must share one frequency"),
    "pe_positions_from_1": (PE, [("torch.arange(max_len, ", "torch.arange(1, max_len + 1, ")],
                            "test_positional_encoding_hidden", "positions start at 1"),
    "pe_sines_then_cosines": (PE, [
        ("    pe = torch.zeros(max_len, d_model)\n"
         "    pe[:, 0::2] = torch.sin(angles)\n"
         "    pe[:, 1::2] = torch.cos(angles)\n",
         "    pe = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)\n"),
    ], "test_positional_encoding_hidden", "must be interleaved"),
    "pe_no_error_for_odd_d_model": (PE, [
        ("    if d_model % 2 != 0:\n"
         "        raise ValueError(f\"d_model must be even to hold sin/cos pairs, got {d_model}\")\n", ""),
    ], "test_positional_encoding_hidden", "should raise ValueError"),
    "pe_float64": (PE, [("pe = torch.zeros(max_len, d_model)", "pe = torch.zeros(max_len, d_model, dtype=torch.float64)")],
                   "test_positional_encoding_hidden", "should be float32"),
    "pe_transposed": (PE, [("return pe", "return pe.T")],
                      "test_positional_encoding_hidden", "the result is transposed"),
}

# Correct, but written differently from the solution: each must get full marks.
CORRECT = {
    "loops_and_warnings": {
        EMBED: '''
import warnings

def one_hot_embed(token_ids, E):
    # A warning on every call must not cost marks.
    warnings.warn("one row at a time", UserWarning)
    V, D = E.shape
    rows = []
    for t in token_ids.reshape(-1).tolist():
        one_hot = torch.zeros(V, dtype=E.dtype)
        one_hot[t] = 1.0
        rows.append(one_hot @ E)
    return torch.stack(rows).reshape(*token_ids.shape, D)
''',
        PE: '''
def sinusoidal_positional_encoding(max_len, d_model):
    if d_model % 2:
        raise ValueError("odd d_model")
    rows = []
    for p in range(max_len):
        row = []
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32).reshape(max_len, d_model)
''',
    },
    "einsum_and_stack": {
        EMBED: '''
def one_hot_embed(token_ids, E):
    one_hot = torch.eye(E.size(0), dtype=E.dtype)[token_ids]  # rows of the identity are one-hot
    return torch.einsum("...v,vd->...d", one_hot, E)
''',
        PE: '''
def sinusoidal_positional_encoding(max_len, d_model):
    if d_model & 1:
        raise ValueError(f"{d_model} is odd")
    inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    angles = torch.outer(torch.arange(max_len).float(), inv_freq)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
''',
    },
    "indexing_and_where": {
        EMBED: '''
def one_hot_embed(token_ids, E):
    # Reading the rows directly computes the same thing as the one-hot product.
    print("using E[token_ids]")  # output on stdout is harmless
    return E[token_ids]
''',
        PE: '''
def sinusoidal_positional_encoding(max_len, d_model):
    if d_model % 2 == 1:
        raise ValueError("d_model must be even")
    j = torch.arange(d_model, dtype=torch.float64)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] / 10000 ** ((j - j % 2) / d_model)
    return torch.where(j % 2 == 0, angles.sin(), angles.cos()).float()
''',
    },
}


globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT, items=(EMBED, PE), time_limit=60,
                                 written=(WRITTEN,)))
