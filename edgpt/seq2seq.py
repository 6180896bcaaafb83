"""A GRU encoder-decoder, with or without Bahdanau attention, as built in the
chapters `bottleneck` and `attention`.

The encoder reads the source and returns one state per position,
H = h_1..h_T. The decoder is a GRU cell run one target position at a time; its
input at step t is the embedding of the previous target token y_{t-1} next to
a context vector c_t:

- without attention, c_t = h_T (the encoder's last state) at every step;
- with attention, c_t = sum_i a_{t,i} h_i, where the weights a_{t,i} are a
  masked softmax of additive scores computed from the previous decoder state
  s_{t-1} (Bahdanau, Cho and Bengio, 2015).

Token ids: 0 is padding, 1 begins and 2 ends a sequence (as in `edgpt.data`).
"""

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from edgpt.rnn import shift_right  # also re-exported: the chapters import it from here

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


# ---------------------------------------------------------------------------
# Bahdanau attention: the three functions of the assignment `attention`.

def additive_attention_scores(s_prev, H, W_s, W_h, v):
    """e[b, i] = v . tanh(s_prev[b] @ W_s + H[b, i] @ W_h).

    s_prev [B, Hs], H [B, T, Hh], W_s [Hs, A], W_h [Hh, A], v [A] -> e [B, T].
    """
    query = (s_prev @ W_s).unsqueeze(1)  # [B, 1, A]
    keys = H @ W_h                       # [B, T, A]
    return torch.tanh(query + keys) @ v  # [B, T]


def masked_softmax(scores, mask):
    """Softmax over the last dimension where `mask` (bool, broadcastable) is True.

    Masked positions get exactly 0; a row with no True at all gets all zeros.
    """
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    # A row that is -inf everywhere has softmax 0/0 = NaN: the second fill
    # turns it into zeros (the other rows are 0 there already).
    return weights.masked_fill(~mask, 0.0)


def attention_context(weights, H):
    """c[b] = sum_i weights[b, i] * H[b, i]: weights [B, T], H [B, T, Hh] -> c [B, Hh]."""
    return (weights.unsqueeze(-1) * H).sum(dim=1)


# ---------------------------------------------------------------------------
# The model.

class Seq2Seq(nn.Module):
    """GRU encoder and GRU-cell decoder; `attention=False` gives the plain model.

    Both variants have the same embeddings, encoder, decoder cell and output
    layer; the attention model adds only W_s, W_h and v.
    """

    def __init__(self, src_vocab, tgt_vocab, emb=16, hidden=64, attn=32, attention=True,
                 bidirectional=False):
        super().__init__()
        self.attention = attention
        self.bidirectional = bidirectional
        self.src_emb = nn.Embedding(src_vocab, emb, padding_idx=PAD_ID)
        # A bidirectional encoder has hidden/2 units per direction, so that
        # h_i = [forward state; backward state] has `hidden` features either way.
        self.encoder = nn.GRU(emb, hidden // 2 if bidirectional else hidden,
                              batch_first=True, bidirectional=bidirectional)
        self.tgt_emb = nn.Embedding(tgt_vocab, emb, padding_idx=PAD_ID)
        self.decoder = nn.GRUCell(emb + hidden, hidden)  # input: [embedding of y_{t-1}; c_t]
        self.out = nn.Linear(2 * hidden, tgt_vocab)      # reads [s_t; c_t]
        if attention:
            self.W_s = nn.Parameter(torch.randn(hidden, attn) / hidden ** 0.5)
            self.W_h = nn.Parameter(torch.randn(hidden, attn) / hidden ** 0.5)
            self.v = nn.Parameter(torch.randn(attn) / attn ** 0.5)

    def encode(self, src, src_len):
        """H [B, S, hidden] (every encoder state), h_T [B, hidden], mask [B, S]."""
        x, rows = self.src_emb(src), torch.arange(src.size(0), device=src.device)
        if not self.bidirectional:
            H, _ = self.encoder(x)
            # The GRU reads left to right, so padding after a sequence never
            # changes its real states: h_T is the state at the last real token.
            return H, H[rows, src_len - 1], self.padding_mask(src, src_len)
        # Right to left, the padding would come first: pack the batch so each
        # direction reads only the real tokens (padded positions come back as 0).
        packed = pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
        H, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True,
                                   total_length=src.size(1))
        half = H.size(-1) // 2
        # Each direction's final state: forward at the last token, backward at the first.
        h_T = torch.cat([H[rows, src_len - 1, :half], H[:, 0, half:]], dim=-1)
        return H, h_T, self.padding_mask(src, src_len)

    @staticmethod
    def padding_mask(src, src_len):
        """True at the real tokens of each source sequence, [B, S]."""
        return torch.arange(src.size(1), device=src.device) < src_len.unsqueeze(1)

    def decoder_step(self, e_prev, s_prev, H, h_T, mask):
        """One decoder step from the embedding e_prev [B, emb] of y_{t-1}.

        Returns s_t [B, hidden], c_t [B, hidden] and the weights a_t [B, S]
        (None without attention)."""
        if self.attention:
            e = additive_attention_scores(s_prev, H, self.W_s, self.W_h, self.v)
            a = masked_softmax(e, mask)
            c = attention_context(a, H)
        else:
            c, a = h_T, None
        s = self.decoder(torch.cat([e_prev, c], dim=-1), s_prev)
        return s, c, a

    def forward(self, src, src_len, dec_in):
        """Teacher forcing: logits [B, T, V] for decoder inputs `dec_in` [B, T]."""
        H, h_T, mask = self.encode(src, src_len)
        emb = self.tgt_emb(dec_in)
        s, outputs, weights = h_T, [], []
        for t in range(dec_in.size(1)):
            s, c, a = self.decoder_step(emb[:, t], s, H, h_T, mask)
            outputs.append(torch.cat([s, c], dim=-1))
            weights.append(a)
        # Kept for plotting: row t holds a_t over the source positions, [B, T, S].
        self.attn_weights = torch.stack(weights, dim=1).detach() if self.attention else None
        return self.out(torch.stack(outputs, dim=1))  # one output layer for all steps

    def loss(self, src, src_len, tgt, tgt_len=None):
        """Cross-entropy of the teacher-forced predictions of `tgt`, padding left
        out: what `edgpt.train.train` minimises for this model."""
        logits = self(src, src_len, shift_right(tgt))
        return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD_ID)


# ---------------------------------------------------------------------------
# The toy task: reverse a string of random digits.

DIGITS = 10
VOCAB = 3 + DIGITS  # <pad>, <bos>, <eos>, then the digits 0..9 as ids 3..12


def reversal_batch(batch_size, min_len, max_len, generator):
    """Random digit strings, lengths drawn uniformly from [min_len, max_len], and
    their reversals: (src [B, S], src_len [B], tgt [B, S], tgt_len [B]). Both
    sequences end with <eos> and are padded to S = longest string + 1."""
    n = torch.randint(min_len, max_len + 1, (batch_size, 1), generator=generator)
    S = int(n.max()) + 1
    digits = torch.randint(3, VOCAB, (batch_size, S), generator=generator)
    pos = torch.arange(S).unsqueeze(0)
    reversed_digits = digits.gather(1, (n - 1 - pos).clamp(min=0))  # position j <- n-1-j

    def finish(seq):  # the n digits, then <eos>, then padding
        return torch.where(pos < n, seq, torch.where(pos == n, EOS_ID, PAD_ID))

    return finish(digits), n.squeeze(1) + 1, finish(reversed_digits), n.squeeze(1) + 1


# ---------------------------------------------------------------------------
# Decoding and evaluation (training: `edgpt.train.train`, which calls `Seq2Seq.loss`).

@torch.no_grad()
def greedy_decode(model, src, src_len, max_len):
    """Decode a whole batch at once, feeding back the arg-max token.

    Returns (tokens [B, max_len], weights [B, max_len, S] or None). After a
    sequence has produced <eos> its later tokens are <pad>; steps not run
    because every sequence had ended are <pad> with zero weights.
    """
    model.eval()
    H, h_T, mask = model.encode(src, src_len)
    B = src.size(0)
    y = torch.full((B,), BOS_ID, dtype=torch.long, device=src.device)
    s, done = h_T, torch.zeros(B, dtype=torch.bool, device=src.device)
    tokens, weights = [], []
    for _ in range(max_len):
        s, c, a = model.decoder_step(model.tgt_emb(y), s, H, h_T, mask)
        logits = model.out(torch.cat([s, c], dim=-1))
        y = logits.argmax(-1).masked_fill(done, PAD_ID)
        tokens.append(y)
        weights.append(a)
        done |= y == EOS_ID
        if done.all():
            break
    missing = max_len - len(tokens)
    tokens = F.pad(torch.stack(tokens, dim=1), (0, missing), value=PAD_ID)
    if not model.attention:
        return tokens, None
    return tokens, F.pad(torch.stack(weights, dim=1), (0, 0, 0, missing))


@torch.no_grad()
def accuracy_by_length(model, lengths, n_per_length=200, seed=1234):
    """Greedy-decode `n_per_length` new digit strings of each length n.

    Returns {n: {"exact": share of outputs equal to the target, <eos> included,
    "token": share of the n digits that are right, "by_position": [n] share
    right at each output position}}.
    """
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    result = {}
    for n in lengths:
        src, src_len, tgt, _ = (t.to(device) for t in reversal_batch(n_per_length, n, n, g))
        pred, _ = greedy_decode(model, src, src_len, max_len=n + 1)
        right = (pred == tgt).float()  # [n_per_length, n + 1]
        result[n] = {
            "exact": right.min(dim=1).values.mean().item(),
            "token": right[:, :n].mean().item(),
            "by_position": right[:, :n].mean(dim=0).cpu(),
        }
    return result
