"""The RNN encoder-decoder of the chapters `encoder_decoder_idea` and
`encoder_decoder`, written from its formulas.

Notation (the chapter explains each symbol):
    encoder  h_t = tanh(x_t W_xh + h_{t-1} W_hh + b_h),   c = h_T
    decoder  s_t = tanh(y_{t-1} W_ys + s_{t-1} W_ss + c W_cs + b_s)
    output   p(y_t | y_<t, x) = softmax(s_t W_out + b_out)
Row vectors times matrices, as in PyTorch: every tensor is [batch, features].
"""
import math

import torch
from torch import nn


def rnn_encoder(x, h0, W_xh, W_hh, b_h):
    """Run a tanh RNN over x [B, T, D] from h0 [B, Hd].

    Returns (H, c): H [B, T, Hd] stacks h_1 .. h_T, and the context c = h_T.
    """
    h = h0
    states = []
    for t in range(x.size(1)):
        h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b_h)
        states.append(h)
    H = torch.stack(states, dim=1)
    return H, h


def rnn_decoder_step(y_prev, s_prev, c, W_ys, W_ss, W_cs, b_s):
    """One decoder step: the new state s_t from the previous token's vector,
    the previous state and the context, all [B, .]."""
    return torch.tanh(y_prev @ W_ys + s_prev @ W_ss + c @ W_cs + b_s)


def shift_right(targets, bos_id=1):
    """Teacher-forcing inputs: <bos> followed by the targets without their last
    token. targets [B, T] -> [B, T]; `targets` itself is left unchanged.
    (<bos> is id 1 in every vocabulary of the course.)"""
    bos_column = torch.full_like(targets[:, :1], bos_id)
    return torch.cat([bos_column, targets[:, :-1]], dim=1)


def gru_step(x_t, h_prev, W_x, W_h, b_x, b_h):
    """One GRU step in PyTorch's convention (gates in the order r, z, n).

    x_t [B, D], h_prev [B, Hd]; W_x [D, 3Hd], W_h [Hd, 3Hd], b_x and b_h [3Hd]:
        r = sigmoid(x W_xr + b_xr + h W_hr + b_hr)       reset gate
        z = sigmoid(x W_xz + b_xz + h W_hz + b_hz)       update gate
        n = tanh(x W_xn + b_xn + r * (h W_hn + b_hn))    candidate state
        h_t = (1 - z) * n + z * h_prev
    """
    xr, xz, xn = (x_t @ W_x + b_x).chunk(3, dim=-1)
    hr, hz, hn = (h_prev @ W_h + b_h).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h_prev


def _uniform(*shape, bound):
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class RNNEncoderDecoder(nn.Module):
    """A sequence-to-sequence model with one tanh RNN on each side.

    The encoder reads the embedded source and hands its last state c to the
    decoder, which starts from s_0 = c and also reads c at every step.
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, emb_dim=64, hidden=128, pad_id=0):
        super().__init__()
        bound = 1 / math.sqrt(hidden)  # the initialisation nn.RNN uses
        self.pad_id = pad_id
        self.src_embedding = nn.Embedding(src_vocab_size, emb_dim, padding_idx=pad_id)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, emb_dim, padding_idx=pad_id)
        # encoder
        self.W_xh = _uniform(emb_dim, hidden, bound=bound)
        self.W_hh = _uniform(hidden, hidden, bound=bound)
        self.b_h = _uniform(hidden, bound=bound)
        # decoder
        self.W_ys = _uniform(emb_dim, hidden, bound=bound)
        self.W_ss = _uniform(hidden, hidden, bound=bound)
        self.W_cs = _uniform(hidden, hidden, bound=bound)
        self.b_s = _uniform(hidden, bound=bound)
        self.out = nn.Linear(hidden, tgt_vocab_size)  # s_t -> scores of every target token

    def encode(self, src, src_lengths):
        """src [B, S] padded at the end, src_lengths [B] -> (H [B, S, Hd], c [B, Hd]).

        The RNN runs over the padding too, but h_t depends only on x_1..x_t,
        so the state at each sentence's last real token is its context."""
        x = self.src_embedding(src)
        h0 = x.new_zeros(src.size(0), self.W_hh.size(0))
        H, _ = rnn_encoder(x, h0, self.W_xh, self.W_hh, self.b_h)
        c = H[torch.arange(src.size(0), device=src.device), src_lengths.to(src.device) - 1]
        return H, c

    def decode_step(self, y_prev_ids, s_prev, c):
        """Token ids [B] of the previous output -> (s_t [B, Hd], logits [B, V])."""
        s = rnn_decoder_step(self.tgt_embedding(y_prev_ids), s_prev, c,
                             self.W_ys, self.W_ss, self.W_cs, self.b_s)
        return s, self.out(s)

    def forward(self, src, src_lengths, tgt_in):
        """Teacher forcing: logits [B, T, V] for decoder inputs tgt_in [B, T]
        (the targets shifted right, see `shift_right`)."""
        _, c = self.encode(src, src_lengths)
        s = c  # s_0 = c
        logits = []
        for t in range(tgt_in.size(1)):
            s, step_logits = self.decode_step(tgt_in[:, t], s, c)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    def loss(self, src, src_lengths, tgt, tgt_lengths=None):
        """`seq2seq_loss` of a batch from `TranslationData.sample`: what
        `edgpt.train.train` minimises for this model."""
        return seq2seq_loss(self, src, src_lengths, tgt, self.pad_id)


def make_step_fn(model, src_ids):
    """Decode one source sentence (a list of ids ending with <eos>) one token
    at a time: returns (step_fn, state) for `edgpt.decoding`.

    step_fn(prev_token, s_prev) -> (log-probabilities [V] of the next token, s_t);
    the first state is s_0 = c."""
    device = next(model.parameters()).device
    with torch.no_grad():
        src = torch.tensor([src_ids], device=device)
        _, c = model.encode(src, torch.tensor([len(src_ids)], device=device))

    def step_fn(prev_token, s_prev):
        with torch.no_grad():
            s, logits = model.decode_step(torch.tensor([prev_token], device=device), s_prev, c)
        return torch.log_softmax(logits[0], dim=-1).cpu(), s

    return step_fn, c


def seq2seq_loss(model, src, src_lengths, tgt, pad_id=0, bos_id=1):
    """Mean cross-entropy of the target tokens under teacher forcing; padding
    positions are left out of the mean."""
    logits = model(src, src_lengths, shift_right(tgt, bos_id))
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1),
                                       ignore_index=pad_id)


@torch.no_grad()
def token_accuracy(model, data, pairs):
    """Share of target tokens (<eos> included, padding not) whose arg-max under
    teacher forcing is right."""
    model.eval()
    device = next(model.parameters()).device
    src, src_len, tgt, _ = (t.to(device) for t in data.batch(pairs))
    pred = model(src, src_len, shift_right(tgt, data.tgt_vocab.bos_id)).argmax(-1)
    real = tgt != data.tgt_vocab.pad_id
    return ((pred == tgt) & real).sum().item() / real.sum().item()
