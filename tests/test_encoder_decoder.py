"""Grading of the `encoder_decoder` assignment with the course's grader, and the
decoding functions of `edgpt` checked against an exhaustive search.

The solution must get full marks, the untouched release zero, every wrong
implementation in WRONG must lose points in the test it names with a message
that names the mistake, and every differently written correct one in CORRECT
must get full marks.
"""
import pytest
import torch

from grading import catalog_tests

ASSIGNMENT = "encoder_decoder"
MAX_POINTS = 19.0  # automatic points; the written answer (2 points) is graded by hand

ENC = "rnn_encoder"
DEC = "rnn_decoder_step"
SHIFT = "shift_right"
GREEDY = "greedy_decode"
BEAM = "beam_search"

# Each mistake is the solution with one edit: name -> (answer cell,
# [(solution text, replaced by)], test cell that must lose its points, words
# its failure message must contain).
WRONG = {
    # rnn_encoder
    "encoder_swaps_the_weights": (ENC, [("x[:, t] @ W_xh + h @ W_hh", "x[:, t] @ W_hh + h @ W_xh")],
                                  "test_rnn_encoder_hidden", "h_t uses x_t @ W_hh"),
    "encoder_transposes_W_xh": (ENC, [("x[:, t] @ W_xh", "x[:, t] @ W_xh.T")],
                                "test_rnn_encoder_hidden", "untransposed"),
    "encoder_without_tanh": (ENC, [("torch.tanh(x[:, t] @ W_xh + h @ W_hh + b_h)",
                                    "x[:, t] @ W_xh + h @ W_hh + b_h")],
                             "test_rnn_encoder_hidden", "tanh missing"),
    "encoder_context_is_h0": (ENC, [("return H, h", "return H, h0")],
                              "test_rnn_encoder_hidden", "c must be h_T, the last state, not h_0"),
    "encoder_context_is_the_mean": (ENC, [("return H, h", "return H, H.mean(dim=1)")],
                                    "test_rnn_encoder_hidden", "not the mean"),
    "encoder_stacks_h0_to_hT_minus_1": (ENC, [
        ("        h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b_h)\n        states.append(h)\n",
         "        states.append(h)\n        h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b_h)\n"),
    ], "test_rnn_encoder_hidden", "H must stack h_1..h_T (not h_0..h_{T-1})"),
    # rnn_decoder_step
    "decoder_ignores_the_context": (DEC, [(" + c @ W_cs", "")],
                                    "test_rnn_decoder_step_hidden", "s_t ignores the context c"),
    "decoder_without_tanh": (DEC, [("torch.tanh(y_prev @ W_ys + s_prev @ W_ss + c @ W_cs + b_s)",
                                    "y_prev @ W_ys + s_prev @ W_ss + c @ W_cs + b_s")],
                             "test_rnn_decoder_step_hidden", "tanh missing"),
    "decoder_swaps_token_and_state_weights": (DEC, [("y_prev @ W_ys + s_prev @ W_ss",
                                                     "y_prev @ W_ss + s_prev @ W_ys")],
                                              "test_rnn_decoder_step_hidden", "the token goes through W_ys"),
    "decoder_without_bias": (DEC, [(" + b_s)", ")")],
                             "test_rnn_decoder_step_hidden", "b_s is missing"),
    # shift_right
    "shift_drops_the_first_column": (SHIFT, [("targets[:, :-1]], dim=1)", "targets[:, 1:]], dim=1)")],
                                     "test_shift_right_hidden", "drops the wrong column"),
    "shift_rolls_instead_of_bos": (SHIFT, [("torch.cat([bos_column, targets[:, :-1]], dim=1)",
                                            "torch.roll(targets, 1, dims=1)")],
                                   "test_shift_right_hidden", "does not start with bos"),
    "shift_modifies_the_input": (SHIFT, [
        ("    return torch.cat([bos_column, targets[:, :-1]], dim=1)\n",
         "    targets[:, 1:] = targets[:, :-1].clone()\n    targets[:, 0] = bos_id\n    return targets\n"),
    ], "test_shift_right_hidden", "modified the input in place"),
    "shift_keeps_every_target": (SHIFT, [("targets[:, :-1]], dim=1)", "targets], dim=1)")],
                                 "test_shift_right_hidden", "T + 1 columns"),
    # greedy_decode
    "greedy_keeps_bos": (GREEDY, [("tokens = []", "tokens = [bos_id]")],
                         "test_greedy_decode_hidden", "greedy_decode keeps bos in the result"),
    "greedy_does_not_stop_at_eos": (GREEDY, [("        if prev == eos_id:\n            break\n", "")],
                                    "test_greedy_decode_hidden", "does not stop at eos"),
    "greedy_drops_the_eos": (GREEDY, [
        ("        tokens.append(prev)\n        if prev == eos_id:\n            break\n",
         "        if prev == eos_id:\n            break\n        tokens.append(prev)\n"),
    ], "test_greedy_decode_hidden", "drops the eos"),
    "greedy_max_len_off_by_one": (GREEDY, [("len(tokens) < max_len", "len(tokens) <= max_len")],
                                  "test_greedy_decode_hidden", "max_len off by one"),
    "greedy_reuses_the_first_state": (GREEDY, [("log_probs, state = step_fn(prev, state)",
                                                "log_probs, _ = step_fn(prev, state)")],
                                      "test_greedy_decode_hidden", "pass the state the last call returned"),
    # beam_search
    "beam_length_normalisation": (BEAM, [("key=lambda hyp: hyp[0])", "key=lambda hyp: hyp[0] / len(hyp[1]))")],
                                  "test_beam_search_hidden", "applies length normalisation"),
    "beam_keeps_finished_hypotheses": (BEAM, [("if tokens[-1] == eos_id or len(tokens) == max_len:",
                                               "if len(tokens) == max_len:")],
                                       "test_beam_search_hidden", "keeps finished hypotheses in the beam"),
    "beam_stops_at_first_complete": (BEAM, [("while beam:", "while beam and not complete:")],
                                     "test_beam_search_hidden", "stops at the first hypothesis to complete"),
    "beam_scores_only_the_last_token": (BEAM, [("candidates.append((score + lp,", "candidates.append((lp,")],
                                        "test_beam_search_hidden", "sum of the log-probabilities of all its tokens"),
    "beam_loses_complete_hypotheses": (BEAM, [
        ("        candidates = []\n",
         "        candidates = [(score, tokens, None) for score, tokens in complete]\n"
         "        complete = []\n"),
    ], "test_beam_search_hidden", "push complete ones out of the beam"),
    "beam_keeps_bos": (BEAM, [("beam = [(0.0, [], state)]", "beam = [(0.0, [bos_id], state)]")],
                       "test_beam_search_hidden", "keeps bos in the result"),
}

# Correct, but written differently from the solution: each must get full marks.
CORRECT = {
    "vectorised_heapq_and_recursion": {
        ENC: '''
def rnn_encoder(x, h0, W_xh, W_hh, b_h):
    # All input projections at once, then the recurrence; einsum for the state.
    xw = torch.einsum("btd,dh->bth", x, W_xh) + b_h
    H = []
    h = h0
    for xw_t in xw.unbind(dim=1):
        h = torch.tanh(xw_t + torch.einsum("bh,hk->bk", h, W_hh))
        H.append(h)
    H = torch.stack(H, 1)
    return H, H[:, -1]
''',
        DEC: '''
def rnn_decoder_step(y_prev, s_prev, c, W_ys, W_ss, W_cs, b_s):
    # One matrix product on the concatenated inputs.
    W = torch.cat([W_ys, W_ss, W_cs], dim=0)
    return torch.tanh(torch.cat([y_prev, s_prev, c], dim=-1) @ W + b_s)
''',
        SHIFT: '''
def shift_right(targets, bos_id):
    out = targets.new_empty(targets.shape)
    out[:, 0] = bos_id
    out[:, 1:] = targets[:, :-1]
    return out
''',
        GREEDY: '''
def greedy_decode(step_fn, state, bos_id, eos_id, max_len):
    def go(prev, state, left):
        if left == 0:
            return []
        log_probs, state = step_fn(prev, state)
        best = int(log_probs.max(dim=-1).indices)
        return [best] if best == eos_id else [best] + go(best, state, left - 1)
    return go(bos_id, state, max_len)
''',
        BEAM: '''
import heapq
import itertools

def beam_search(step_fn, state, bos_id, eos_id, beam_size, max_len):
    counter = itertools.count()  # breaks ties by insertion order, never compares states
    live = [(0.0, [], state)]
    done = []
    while live:
        pool = []
        for score, seq, st in live:
            log_probs, nst = step_fn(seq[-1] if seq else bos_id, st)
            for tok in range(log_probs.shape[0]):
                pool.append((score + log_probs[tok].item(), next(counter), seq + [tok], nst))
        best = heapq.nlargest(beam_size, pool, key=lambda item: (item[0], -item[1]))
        live = []
        for score, _, seq, nst in best:
            finished = seq[-1] == eos_id or len(seq) >= max_len
            (done if finished else live).append((score, seq, nst))
    return max(done, key=lambda item: item[0])[1]
''',
    },
    "torch_ops_topk_and_warnings": {
        ENC: '''
import warnings

def rnn_encoder(x, h0, W_xh, W_hh, b_h):
    warnings.warn("looping in Python", UserWarning)  # a warning must not cost marks
    B, T, _ = x.shape
    H = x.new_zeros(B, T, W_hh.shape[0])
    h = h0.clone()
    for t in range(T):
        h = F.linear(x[:, t], W_xh.T) + F.linear(h, W_hh.T) + b_h
        h = h.tanh()
        H[:, t] = h
    return H, H[:, T - 1].clone()
''',
        DEC: '''
def rnn_decoder_step(y_prev, s_prev, c, W_ys, W_ss, W_cs, b_s):
    pre = torch.addmm(b_s, y_prev, W_ys)
    pre = pre + torch.matmul(s_prev, W_ss) + torch.matmul(c, W_cs)
    return torch.tanh(pre)
''',
        SHIFT: '''
def shift_right(targets, bos_id):
    padded = F.pad(targets, (1, 0), value=bos_id)
    return padded[:, :-1].clone()
''',
        GREEDY: '''
def greedy_decode(step_fn, state, bos_id, eos_id, max_len):
    out = []
    token = bos_id
    for _ in range(max_len):
        log_probs, state = step_fn(token, state)
        token = log_probs.argmax().item()
        out.append(token)
        if token == eos_id:
            return out
    print("reached max_len")  # output on stdout is harmless
    return out
''',
        BEAM: '''
def beam_search(step_fn, state, bos_id, eos_id, beam_size, max_len):
    # Tensors for the scores: topk over a [live, V] matrix of extensions.
    seqs, states = [[]], [state]
    scores = torch.zeros(1, dtype=torch.float64)
    finished = []
    while seqs:
        rows, new_states = [], []
        for seq, st in zip(seqs, states):
            lp, nst = step_fn(seq[-1] if seq else bos_id, st)
            rows.append(lp.double())
            new_states.append(nst)
        total = scores[:, None] + torch.stack(rows)
        V = total.shape[1]
        k = min(beam_size, total.numel())
        # stable descending order: equal scores keep their order (lower index first)
        order = torch.sort(total.flatten(), descending=True, stable=True).indices[:k]
        seqs_next, states_next, scores_next = [], [], []
        for flat in order.tolist():
            i, tok = divmod(flat, V)
            seq = seqs[i] + [tok]
            value = total[i, tok]
            if tok == eos_id or len(seq) == max_len:
                finished.append((float(value), seq))
            else:
                seqs_next.append(seq)
                states_next.append(new_states[i])
                scores_next.append(value)
        seqs, states = seqs_next, states_next
        scores = torch.stack(scores_next) if scores_next else scores[:0]
    finished.sort(key=lambda f: -f[0])
    return finished[0][1]
''',
    },
}


globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT,
                               items=(ENC, DEC, SHIFT, GREEDY, BEAM), time_limit=60,
                               written=("teacher_forcing_answer",)))


# ---------------------------------------------------------------------------
# The reference decoders in edgpt, without nbgrader: beam search must equal an
# exhaustive search when the beam keeps everything, and greedy when it keeps one.

def _random_model(V, bos_id, eos_id, generator, eos_bias=0.0):
    """Random next-token log-probabilities keyed by the whole prefix."""
    table = {}

    def step_fn(prev_token, state):
        prefix = state + (prev_token,)
        if prefix not in table:
            logits = 1.5 * torch.randn(V, generator=generator)
            logits[eos_id] += eos_bias
            table[prefix] = torch.log_softmax(logits, dim=-1)
        return table[prefix], prefix

    return step_fn, ()


@pytest.mark.parametrize("seed", range(20))
def test_edgpt_beam_search_matches_exhaustive_search_and_greedy(seed):
    from edgpt.decoding import beam_search, exhaustive_search, greedy_decode, sequence_score

    g = torch.Generator().manual_seed(seed)
    V = 3 + seed % 3
    max_len = 2 + seed % (3 if V == 5 else 4)
    bos_id, eos_id = V, seed % V
    step_fn, state = _random_model(V, bos_id, eos_id, g, eos_bias=seed % 4 - 1.0)

    best = exhaustive_search(step_fn, state, bos_id, eos_id, max_len)
    wide = beam_search(step_fn, state, bos_id, eos_id, V ** max_len, max_len)
    assert wide == best
    assert beam_search(step_fn, state, bos_id, eos_id, 1, max_len) == greedy_decode(
        step_fn, state, bos_id, eos_id, max_len)

    def score(tokens):
        return sequence_score(step_fn, state, bos_id, tokens)

    for k in (2, 3):
        found = beam_search(step_fn, state, bos_id, eos_id, k, max_len)
        assert found[-1] == eos_id or len(found) == max_len, "a complete hypothesis"
        assert eos_id not in found[:-1] and len(found) <= max_len
        assert score(found) <= score(best) + 1e-9


def test_edgpt_decoders_follow_the_eos_and_max_len_rules():
    from edgpt.decoding import beam_search, greedy_decode

    # Token 2 = <eos> is always the most likely: both stop after it, and keep it.
    always_eos = torch.tensor([0.1, 0.1, 0.8]).log()
    step = lambda prev, state: (always_eos, state)  # noqa: E731
    assert greedy_decode(step, None, 0, 2, 5) == [2]
    assert beam_search(step, None, 0, 2, 3, 5) == [2]
    # <eos> never wins: both stop at max_len tokens.
    never_eos = torch.tensor([0.2, 0.7, 0.1]).log()
    step = lambda prev, state: (never_eos, state)  # noqa: E731
    assert greedy_decode(step, None, 0, 2, 4) == [1, 1, 1, 1]
    assert beam_search(step, None, 0, 2, 1, 4) == [1, 1, 1, 1]
