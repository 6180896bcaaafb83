"""Turning a decoder's next-token distributions into one output sequence.

Every function drives a `step_fn(prev_token, state) -> (log_probs [V], new_state)`
from `bos_id`, and returns the generated token ids without `bos_id`. A sequence
is complete when it ends with `eos_id` (kept in the result) or holds `max_len`
tokens; its score is the sum of the log-probabilities of its tokens.
"""
import torch


def greedy_decode(step_fn, state, bos_id, eos_id, max_len):
    """Take the most probable token at every step."""
    tokens = []
    prev = bos_id
    while len(tokens) < max_len:
        log_probs, state = step_fn(prev, state)
        prev = int(torch.argmax(log_probs))
        tokens.append(prev)
        if prev == eos_id:
            break
    return tokens


def beam_search(step_fn, state, bos_id, eos_id, beam_size, max_len):
    """Keep the `beam_size` best partial sequences at every step.

    Each step extends every live hypothesis by every token and keeps the
    `beam_size` best extensions; the complete ones among them leave the beam
    (so the beam can shrink). Scores are plain sums of log-probabilities, with
    no length normalisation. Returns the best complete hypothesis.
    """
    beam = [(0.0, [], state)]  # live hypotheses: (score, tokens, state)
    complete = []              # finished ones: (score, tokens)
    while beam:
        candidates = []
        for score, tokens, st in beam:
            log_probs, new_st = step_fn(tokens[-1] if tokens else bos_id, st)
            # Only this hypothesis' beam_size best tokens can be among the
            # beam_size best extensions, so the others are skipped (a stable
            # sort: among equal log-probabilities the lower token id first).
            best = torch.sort(log_probs, descending=True, stable=True).indices[:beam_size]
            for token in sorted(best.tolist()):  # in token order, as if none were skipped
                lp = float(log_probs[token])
                candidates.append((score + lp, tokens + [token], new_st))
        # A stable sort: among equal scores the earlier candidate (lower token
        # id) wins, as torch.argmax does, so beam_size=1 is exactly greedy.
        candidates.sort(key=lambda cand: cand[0], reverse=True)
        beam = []
        for score, tokens, st in candidates[:beam_size]:
            if tokens[-1] == eos_id or len(tokens) == max_len:
                complete.append((score, tokens))
            else:
                beam.append((score, tokens, st))
    best_score, best_tokens = max(complete, key=lambda hyp: hyp[0])
    return best_tokens


def exhaustive_search(step_fn, state, bos_id, eos_id, max_len):
    """The best-scoring complete sequence, found by trying every one of them
    (V + V^2 + ... + V^max_len sequences: only for tiny vocabularies)."""
    best_score, best_tokens = float("-inf"), None

    def visit(score, tokens, st):
        nonlocal best_score, best_tokens
        log_probs, new_st = step_fn(tokens[-1] if tokens else bos_id, st)
        for token, lp in enumerate(log_probs.tolist()):
            extended = tokens + [token]
            if token == eos_id or len(extended) == max_len:
                if score + lp > best_score:
                    best_score, best_tokens = score + lp, extended
            else:
                visit(score + lp, extended, new_st)

    visit(0.0, [], state)
    return best_tokens


def sequence_score(step_fn, state, bos_id, tokens):
    """Sum of the log-probabilities the decoder gives to `tokens`, one by one."""
    score, prev = 0.0, bos_id
    for token in tokens:
        log_probs, state = step_fn(prev, state)
        score += float(log_probs[token])
        prev = token
    return score
