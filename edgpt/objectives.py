"""The three families of Transformer language models, as compared in the chapter
`bert_gpt_t5`: their attention masks and their training objectives.

- BERT (encoder-only): every position sees every position (a bidirectional
  mask); trained by masked language modelling (`mlm_mask`, `mlm_loss`).
- GPT (decoder-only): position t sees positions <= t (`causal_mask`); trained
  by next-token prediction (`edgpt.gpt.lm_inputs_and_targets`).
- T5 (encoder-decoder): the encoder sees the whole input, the decoder its own
  past and the whole input; over the concatenation [input; output] that is a
  prefix-LM mask (`prefix_lm_mask`). Trained by span corruption
  (`random_spans_noise_mask`, `span_corrupt`).

Masks follow `edgpt.attention`: boolean, True where a query (row) may attend
to a key (column).
"""
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgpt.gpt import GPT, causal_mask  # noqa: F401  (causal_mask is re-exported)
from edgpt.transformer import EncoderLayer

IGNORE_INDEX = -100  # F.cross_entropy skips targets with this value


# ------------------------------------------------------------------ masks

def bidirectional_mask(T, device=None):
    """bool [T, T], all True: every position attends to every position (BERT)."""
    return torch.ones(T, T, dtype=torch.bool, device=device)


def prefix_lm_mask(T, prefix_len, device=None):
    """bool [T, T]: the first `prefix_len` positions (the input) are visible to
    every position; after them, a position sees the rest causally.

    Row i may read column j when j < prefix_len or j <= i. The prefix rows thus
    see the whole prefix and nothing after it, as a T5 encoder does, and the
    other rows see the whole prefix and their own past, as a T5 decoder does.
    """
    if not 0 <= prefix_len <= T:
        raise ValueError(f"prefix_len must be in [0, {T}], got {prefix_len}")
    visible_prefix = torch.arange(T, device=device) < prefix_len  # [T] over keys
    return causal_mask(T).to(device) | visible_prefix.unsqueeze(0)


def encoder_decoder_visibility(S, T, device=None):
    """bool [S+T, S+T]: which positions of [input (S); output (T)] can reach
    which, in an encoder-decoder model, assembled from its three attentions:

        encoder self-attention   input  -> input    all True  (bidirectional)
        decoder cross-attention  output -> input    all True
        decoder self-attention   output -> output   causal
        (nothing)                input  -> output   all False
    """
    top = torch.cat([bidirectional_mask(S, device),
                     torch.zeros(S, T, dtype=torch.bool, device=device)], dim=1)
    bottom = torch.cat([torch.ones(T, S, dtype=torch.bool, device=device),
                        causal_mask(T).to(device)], dim=1)
    return torch.cat([top, bottom], dim=0)


@torch.no_grad()
def dependency_matrix(fn, x, tol=1e-6):
    """Which outputs of `fn` change when one input position changes.

    `fn` maps x [1, T_in, D] to [1, T_out, D']. Returns bool [T_out, T_in]: entry
    (i, j) is True when perturbing input position j moves output position i by
    more than `tol`. For a model this measures the visibility its masks allow
    (through all of its layers).
    """
    base = fn(x)
    # A direction with a varying sign and size: a constant shift of all features
    # would be removed by the next LayerNorm and look like no change at all.
    direction = torch.randn(x.size(-1), generator=torch.Generator().manual_seed(0)).to(x)
    columns = []
    for j in range(x.size(1)):
        nudged = x.clone()
        nudged[:, j] += direction
        columns.append((fn(nudged) - base).abs().amax(dim=-1)[0] > tol)  # [T_out]
    return torch.stack(columns, dim=1)


# ------------------------------------------------------- masked language model

@dataclass
class MLMBatch:
    """What `mlm_mask` returns, all [B, T].

    inputs: the corrupted tokens the model reads.
    labels: the original token at the chosen positions, IGNORE_INDEX elsewhere.
    kind:   0 not chosen, 1 replaced by [MASK], 2 replaced by a random token,
            3 chosen but left unchanged.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    kind: torch.Tensor

    @property
    def chosen(self):
        return self.kind > 0


NOT_CHOSEN, MASKED, RANDOM, KEPT = 0, 1, 2, 3


def mlm_mask(tokens, mask_id, vocab_size, generator=None, mask_prob=0.15,
             special_ids=(), split=(0.8, 0.1, 0.1)):
    """BERT's masking: choose `round(mask_prob * n)` positions per row (at least
    one), where n counts the row's tokens that are not special; of the chosen,
    80% become `mask_id`, 10% a random token, 10% stay as they are.

    tokens: LongTensor [B, T] on the CPU (masking is data preparation; move
    the result to the model's device). Special tokens ([CLS], [SEP], padding) are never
    chosen and never drawn as random replacements. As in BERT's own code, the
    number of chosen positions is exact (rounded) and the 80/10/10 decision is
    drawn independently for each chosen position. Returns an `MLMBatch`.
    """
    if abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split must sum to 1, got {split}")
    specials = torch.tensor(sorted(set(special_ids) | {mask_id}), dtype=torch.long)
    candidate = ~torch.isin(tokens, specials)                              # [B, T]
    n_chosen = (candidate.sum(1) * mask_prob).round().clamp(min=1)         # [B]
    n_chosen = torch.minimum(n_chosen, candidate.sum(1)).long()

    # A random order of each row's candidates; the first n_chosen are chosen.
    scores = torch.rand(tokens.shape, generator=generator).masked_fill(~candidate, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)                            # 0 = first
    chosen = candidate & (rank < n_chosen.unsqueeze(1))

    u = torch.rand(tokens.shape, generator=generator)
    kind = torch.full_like(tokens, NOT_CHOSEN)
    kind[chosen & (u < split[0])] = MASKED
    kind[chosen & (u >= split[0]) & (u < split[0] + split[1])] = RANDOM
    kind[chosen & (u >= split[0] + split[1])] = KEPT

    allowed = torch.tensor([i for i in range(vocab_size) if i not in set(specials.tolist())])
    random_tokens = allowed[torch.randint(len(allowed), tokens.shape, generator=generator)]
    inputs = tokens.clone()
    inputs[kind == MASKED] = mask_id
    inputs[kind == RANDOM] = random_tokens[kind == RANDOM]
    labels = tokens.masked_fill(~chosen, IGNORE_INDEX)
    return MLMBatch(inputs=inputs, labels=labels, kind=kind)


def mlm_loss(logits, labels):
    """Mean cross-entropy over the chosen positions only: logits [B, T, V],
    labels [B, T] with IGNORE_INDEX at the positions that were not chosen."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


# ------------------------------------------------------------ span corruption

def t5_sentinel(i):
    """The i-th sentinel token of T5's vocabulary, as text."""
    return f"<extra_id_{i}>"


def is_t5_sentinel(token):
    return isinstance(token, str) and re.fullmatch(r"<extra_id_\d+>", token) is not None


def _random_segmentation(num_items, num_segments, generator):
    """Split `num_items` into `num_segments` non-empty parts, uniformly at random
    among all such splits; returns their lengths."""
    cuts = torch.randperm(num_items - 1, generator=generator)[:num_segments - 1] + 1
    bounds = torch.cat([torch.tensor([0]), cuts.sort().values, torch.tensor([num_items])])
    return bounds.diff()


def random_spans_noise_mask(length, noise_density=0.15, mean_noise_span_length=3.0, generator=None,
                            random_roll=False):
    """T5's choice of what to drop: bool [length], True at dropped ("noise") tokens.

    `round(length * noise_density)` tokens (at least 1, at most length - 1) are
    dropped, in `round(noise / mean_noise_span_length)` spans (at least 1). The
    noise and the kept tokens are each split into that many non-empty runs at
    random and interleaved, kept run first, as in T5's `random_spans_noise_mask`.
    So the sequence starts with a kept run and ends with a dropped one; with a
    single span, the dropped tokens are always the last ones. `random_roll=True`
    rotates the mask by a random offset, so that any position can be dropped
    (a run may then wrap around, from the end to the start).
    """
    if length < 2:
        raise ValueError("span corruption needs at least 2 tokens")
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(num_noise / mean_noise_span_length), 1)
    num_spans = min(num_spans, num_noise, length - num_noise)
    noise_lengths = _random_segmentation(num_noise, num_spans, generator)
    kept_lengths = _random_segmentation(length - num_noise, num_spans, generator)
    mask = []
    for kept, noise in zip(kept_lengths.tolist(), noise_lengths.tolist()):
        mask += [False] * kept + [True] * noise
    mask = torch.tensor(mask)
    if random_roll:
        mask = mask.roll(int(torch.randint(length, (1,), generator=generator)))
    return mask


def span_corrupt(tokens, noise_mask, sentinel=t5_sentinel):
    """T5's input and target for one sequence (lists of tokens).

    Each run of dropped tokens is replaced in the input by one sentinel,
    sentinel(0), sentinel(1), ... in order. The target lists, for each run, its
    sentinel followed by the dropped tokens, and ends with one more sentinel.
    """
    noise_mask = [bool(m) for m in noise_mask]
    if len(noise_mask) != len(tokens):
        raise ValueError("noise_mask and tokens differ in length")
    inputs, targets, span = [], [], 0
    for i, (token, dropped) in enumerate(zip(tokens, noise_mask)):
        if dropped:
            if i == 0 or not noise_mask[i - 1]:  # a new dropped run begins
                inputs.append(sentinel(span))
                targets.append(sentinel(span))
                span += 1
            targets.append(token)
        else:
            inputs.append(token)
    targets.append(sentinel(span))
    return inputs, targets


def span_restore(inputs, targets, is_sentinel=is_t5_sentinel):
    """The original sequence from `span_corrupt`'s input and target: every
    sentinel of the input is replaced by what follows the same sentinel in the
    target, up to the next sentinel."""
    fill, current = {}, None
    for token in targets:
        if is_sentinel(token):
            current = token
            fill[current] = []
        elif current is not None:
            fill[current].append(token)
    out = []
    for token in inputs:
        out.extend(fill[token] if is_sentinel(token) else [token])
    return out


# ------------------------------------------------------------------ models

class GPTClassifier(nn.Module):
    """A GPT (`edgpt.gpt.GPT`) whose language-model head is replaced by a
    classification head that reads the hidden state of one position.

    `read="last"`: the last position (or, given `lengths`, each row's last real
    token), the only one that has seen the whole sequence under the causal
    mask. `read="first"`: position 0, which has seen only itself.
    `forward(idx [B, T], lengths=None) -> logits [B, num_classes]`.
    """

    def __init__(self, vocab_size, max_len, d_model, n_layer, num_heads, num_classes, read="last"):
        super().__init__()
        if read not in ("last", "first"):
            raise ValueError(f"read must be 'last' or 'first', got {read!r}")
        self.read = read
        self.gpt = GPT(vocab_size, max_len, d_model, n_layer, num_heads, tie_embeddings=False)
        self.gpt.lm_head = nn.Identity()  # the trunk now returns its final hidden states
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, idx, lengths=None):
        hidden = self.gpt(idx)  # [B, T, d_model], after the final LayerNorm
        B, T = idx.shape
        if self.read == "first":
            position = torch.zeros(B, dtype=torch.long, device=idx.device)
        elif lengths is not None:
            position = lengths.to(idx.device) - 1
        else:
            position = torch.full((B,), T - 1, dtype=torch.long, device=idx.device)
        return self.head(hidden[torch.arange(B, device=idx.device), position])


class TinyBERT(nn.Module):
    """Encoder-only language model: token and learned position embeddings, a
    stack of pre-LN `EncoderLayer`s with no mask (every position sees every
    position), a final LayerNorm and an output head over the vocabulary.
    `forward(idx [B, T]) -> logits [B, T, vocab_size]`, one distribution per
    position, each computed from the whole (corrupted) input."""

    def __init__(self, vocab_size, max_len, d_model, n_layer, num_heads):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, 4 * d_model, norm_first=True) for _ in range(n_layer))
        for layer in self.layers:
            layer.ffn.act = nn.GELU()  # BERT's activation
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.size(1), device=idx.device))
        for layer in self.layers:
            x = layer(x)  # mask=None: bidirectional
        return self.head(self.norm(x))
