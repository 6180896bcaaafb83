"""The capstone chapter: one translation-like task, solved by an encoder-decoder
Transformer and by a decoder-only model.

The task: a number written in digits becomes English number words,
"407" -> "four hundred seven", "12030" -> "twelve thousand thirty". Sources
and targets share one vocabulary: `PAD` (id 0, the padding the Transformer
masks), `SEP` (the separator of the decoder-only model, which is also the
encoder-decoder's start-of-target token), `EOS`, the ten digits and the
number words.

The three functions of the graded assignment `capstone` are here in their
reference form: `pack_source_target`, `decoder_only_greedy`, `exact_match`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from edgpt.train import train

# ------------------------------------------------------------------ the task

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
        "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
        "seventeen", "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SPECIALS = ["<pad>", "<sep>", "<eos>"]
DIGITS = [str(d) for d in range(10)]
WORDS = ONES + TENS + ["hundred", "thousand"]
VOCAB = SPECIALS + DIGITS + WORDS
STOI = {token: i for i, token in enumerate(VOCAB)}
PAD, SEP, EOS = STOI["<pad>"], STOI["<sep>"], STOI["<eos>"]

MAX_DIGITS = 6                        # numbers 0 .. 999,999
MAX_WORDS = 9                         # "nine hundred ninety nine thousand nine hundred ninety nine"
SRC_LEN = MAX_DIGITS + 1              # S: source columns, the digits and <eos>
TGT_LEN = MAX_WORDS + 1               # T: target columns, the words and <eos>


def number_to_words(n):
    """American English number words, without "and": 407 -> ['four', 'hundred', 'seven']."""
    if not 0 <= n < 10 ** MAX_DIGITS:
        raise ValueError(f"{n} is outside 0 .. {10 ** MAX_DIGITS - 1}")
    if n < 20:
        return [ONES[n]]
    if n < 100:
        return [TENS[n // 10 - 2]] + ([ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [ONES[n // 100], "hundred"] + (number_to_words(n % 100) if n % 100 else [])
    return number_to_words(n // 1000) + ["thousand"] + (number_to_words(n % 1000) if n % 1000 else [])


def encode_pairs(numbers):
    """Numbers -> (src [B, S], tgt [B, T]) token ids.

    A source row is the digits, then EOS, then PAD; a target row is the words,
    then EOS, then PAD. The EOS that ends a source matters to the
    encoder-decoder: its attention ignores PAD, so without EOS only the
    positions would tell where the number ends."""
    def row(tokens, length):
        return [STOI[t] for t in tokens] + [EOS] + [PAD] * (length - len(tokens) - 1)

    src = torch.tensor([row(str(n), SRC_LEN) for n in numbers], dtype=torch.long)
    tgt = torch.tensor([row(number_to_words(n), TGT_LEN) for n in numbers], dtype=torch.long)
    return src.view(len(numbers), SRC_LEN), tgt.view(len(numbers), TGT_LEN)


def to_text(ids):
    """Token ids -> text, up to the first EOS (PAD and SEP left out)."""
    out = []
    for i in ids.tolist() if torch.is_tensor(ids) else ids:
        if i == EOS:
            break
        if i not in (PAD, SEP):
            out.append(VOCAB[i])
    return "".join(out) if out and out[0] in DIGITS else " ".join(out)


def draw_numbers(count, generator, exclude=(), length_weights=(1, 2, 3, 4, 5, 6)):
    """`count` numbers, none of them in `exclude`. The number of digits k is drawn
    with probability proportional to length_weights[k - 1] (by default to k:
    there are only 100 numbers of one or two digits, and longer ones are
    harder), then the number uniformly among those with k digits."""
    weights = torch.tensor(length_weights, dtype=torch.float)
    out = []
    while len(out) < count:
        k = torch.multinomial(weights, count, replacement=True, generator=generator) + 1
        low = torch.where(k == 1, 0, 10 ** (k - 1))
        u = torch.rand(count, generator=generator, dtype=torch.float64)
        numbers = low + (u * (10 ** k - low)).long()
        out += [n for n in numbers.tolist() if n not in exclude]
    return out[:count]


def held_out_numbers(per_length, generator, min_digits=3):
    """A test set: `per_length` different numbers of each length min_digits .. MAX_DIGITS."""
    test = []
    for k in range(min_digits, MAX_DIGITS + 1):
        chosen = torch.randperm(9 * 10 ** (k - 1), generator=generator)[:per_length] + 10 ** (k - 1)
        test += chosen.tolist()
    return test


# ------------------------------------------- graded in the assignment `capstone`

def pack_source_target(src, tgt, sep_id, ignore_index=-100):
    """One sequence per pair for a decoder-only model: `source <sep> target`.

    src [B, S], tgt [B, T] -> (inputs [B, S+T], targets [B, S+T]). The targets
    are the inputs shifted by one; the first S of them (the predictions made at
    the source tokens, which are given, not generated) are `ignore_index`, so
    the loss covers only the target tokens: targets[:, S:] == tgt.
    """
    B, S = src.shape
    sep = torch.full((B, 1), sep_id, dtype=src.dtype, device=src.device)
    seq = torch.cat([src, sep, tgt], dim=1)
    inputs = seq[:, :-1]
    targets = seq[:, 1:].clone()
    # no loss on the predictions of src[1:] and of <sep>
    targets[:, :S] = ignore_index
    return inputs, targets


@torch.no_grad()
def decoder_only_greedy(model, src, sep_id, eos_id, max_new_tokens):
    """Greedy decoding of a decoder-only model from the prompt `src <sep>`.

    `model(idx [B, L])` returns logits [B, L, V]. Each step appends the arg-max
    of the last position's logits; a row that has emitted `eos_id` keeps
    emitting it. Returns only the generated tokens, [B, max_new_tokens].
    """
    B, S = src.shape
    sep = torch.full((B, 1), sep_id, dtype=src.dtype, device=src.device)
    idx = torch.cat([src, sep], dim=1)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_new_tokens):
        logits = model(idx)
        next_token = logits[:, -1].argmax(dim=-1)
        # a row that has emitted eos_id keeps emitting it
        next_token = torch.where(done, torch.full_like(next_token, eos_id), next_token)
        done = done | (next_token == eos_id)
        idx = torch.cat([idx, next_token[:, None]], dim=1)
    return idx[:, S + 1:]


def exact_match(pred, tgt, eos_id):
    """Share of rows in which the prediction, up to and including its first
    `eos_id` (the whole row if there is none), equals the target cut the same
    way. Whatever follows the first EOS (padding, more EOS) is ignored."""
    def cut(row):
        hits = (row == eos_id).nonzero()
        return row[: int(hits[0]) + 1] if len(hits) else row

    same = [torch.equal(cut(p), cut(t)) for p, t in zip(pred, tgt)]
    return sum(same) / len(same)


# ----------------------------------------------------- the two models' side

class TeacherForced(nn.Module):
    """One-tensor interface for an encoder-decoder: `forward(x)` with
    `x = cat(src, tgt_in)` runs `seq2seq(src, tgt_in)`, splitting after `src_len`
    columns, so both models train with the same loop."""

    def __init__(self, seq2seq, src_len):
        super().__init__()
        self.seq2seq, self.src_len = seq2seq, src_len

    def forward(self, x):
        return self.seq2seq(x[:, :self.src_len], x[:, self.src_len:])


def teacher_forcing_batch(src, tgt, bos_id, ignore_index=-100, pad_id=PAD):
    """(x, y) for `TeacherForced`: x = cat(src, tgt_in), where tgt_in is the
    target shifted right behind `bos_id`; y = tgt with PAD set to ignore_index."""
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], bos_id), tgt[:, :-1]], dim=1)
    return torch.cat([src, tgt_in], dim=1), tgt.masked_fill(tgt == pad_id, ignore_index)


def decoder_only_batch(src, tgt, sep_id, ignore_index=-100, pad_id=PAD):
    """(x, y) for a decoder-only model: `pack_source_target`, and PAD targets
    (after EOS) set to ignore_index as well."""
    x, y = pack_source_target(src, tgt, sep_id, ignore_index)
    return x, y.masked_fill(y == pad_id, ignore_index)


def train_steps(model, make_batch, steps, lr=3e-3, warmup=50, desc="training", device=None):
    """`edgpt.train.train` with a warm-up and a linear decay of the learning
    rate: with a constant rate the decoder-only model stalled near 90%."""
    return train(model, make_batch, steps, lr=lr, schedule="linear", warmup=warmup, desc=desc, device=device)


@torch.no_grad()
def encoder_decoder_greedy(model, src, bos_id, eos_id, max_new_tokens):
    """Greedy decoding of `edgpt.transformer.Transformer`: the source is encoded
    once; each step runs the decoder on the target so far and appends the
    arg-max. Output as `decoder_only_greedy`'s: [B, max_new_tokens]."""
    memory = model.encode(src)
    tgt = torch.full((src.size(0), 1), bos_id, dtype=src.dtype, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_new_tokens):
        next_token = model.decode(tgt, memory, src)[:, -1].argmax(dim=-1)
        next_token = next_token.masked_fill(done, eos_id)
        done |= next_token == eos_id
        tgt = torch.cat([tgt, next_token[:, None]], dim=1)
    return tgt[:, 1:]


@torch.no_grad()
def decoder_only_greedy_cached(model, src, sep_id, eos_id, max_new_tokens):
    """`decoder_only_greedy` with the key/value cache of `edgpt.gpt.GPT`: the
    prompt runs through the model once, then each step feeds only the newest
    token. Same tokens, far fewer positions computed."""
    B = src.size(0)
    idx = torch.cat([src, torch.full((B, 1), sep_id, dtype=src.dtype, device=src.device)], dim=1)
    cache = model.new_cache()
    logits = model(idx, cache)[:, -1]
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    out = []
    for step in range(max_new_tokens):
        next_token = logits.argmax(dim=-1).masked_fill(done, eos_id)
        done |= next_token == eos_id
        out.append(next_token)
        if step < max_new_tokens - 1:
            logits = model(next_token[:, None], cache)[:, -1]
    return torch.stack(out, dim=1)


# ------------------------------------------------------ measuring and showing

def num_parameters(model):
    """Trainable parameters; a matrix shared by two modules counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_backward(model, x, y):
    """One training step without the optimiser: loss of model(x) against y, gradients."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
    loss.backward()
    return loss.item()


def matmul_flops(fn):
    """Floating-point operations of the matrix products fn() runs (PyTorch's
    FlopCounterMode: linear layers and attention; not softmax or LayerNorm)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@torch.no_grad()
def gpt_attention(model, idx, layer):
    """Attention weights [B, h, L, L] of block `layer` of an `edgpt.gpt.GPT` on idx [B, L]."""
    from edgpt.attention import scaled_dot_product_attention, split_heads
    from edgpt.gpt import causal_mask

    L = idx.size(1)
    x = model.wte(idx) + model.wpe(torch.arange(L, device=idx.device))
    for block in model.h[:layer]:
        x = block(x)
    attn = model.h[layer].attn
    q, k, _ = attn.c_attn(model.h[layer].ln_1(x)).split(x.size(-1), dim=-1)
    q, k = split_heads(q, attn.num_heads), split_heads(k, attn.num_heads)
    _, weights = scaled_dot_product_attention(q, k, k, causal_mask(L).to(idx.device))
    return weights


def visibility(S, T, kind):
    """bool [S+1+T, S+1+T] over `source <sep> target`: True where the position
    of the row may take information from the position of the column.

    - "decoder-only": one causal stack, every position sees itself and the past.
    - "prefix-LM": the same stack, but source and <sep> see each other in both
      directions; the target stays causal.
    - "encoder-decoder": the source is read by the encoder (both directions);
      the decoder reads <sep> (its start token) and the target causally, and
      the whole source through cross-attention. The source never sees <sep>.
    """
    L = S + 1 + T
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    if kind == "decoder-only":
        return causal
    if kind == "prefix-LM":
        causal[: S + 1, : S + 1] = True
        return causal
    if kind == "encoder-decoder":
        out = torch.zeros(L, L, dtype=torch.bool)
        out[:S, :S] = True                                               # encoder self-attention
        out[S:, S:] = torch.ones(T + 1, T + 1, dtype=torch.bool).tril()  # decoder self-attention
        out[S:, :S] = True                                               # cross-attention
        return out
    raise ValueError(f"unknown kind {kind!r}")
