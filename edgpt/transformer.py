"""The encoder-decoder Transformer of "Attention Is All You Need", as built in
the chapter `transformer`, from the course's own attention and feed-forward
modules.

A layer wraps each sub-layer (self-attention, cross-attention, feed-forward)
in a residual connection and a LayerNorm. Two placements of the norm:

- post-LN (the paper): x = norm(x + sublayer(x))
- pre-LN (GPT-2 and most models since): x = x + sublayer(norm(x)); the stack
  then needs one final LayerNorm, since nothing normalises the last residual sum.

Masks follow `edgpt.attention`: boolean, True where a query may attend to a key.
"""
import math

import torch
from torch import nn

from edgpt.attention import MultiHeadAttention
from edgpt.feed_forward import PositionwiseFeedForward
from edgpt.positions import sinusoidal_positional_encoding


class EncoderLayer(nn.Module):
    """Self-attention, then a feed-forward network, each in a residual connection."""

    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, mask)
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.self_attn(x, x, x, mask))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention, feed-forward; each in a residual
    connection. In cross-attention the queries come from the decoder (`y`), the
    keys and values from the encoder's output (`memory`)."""

    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, y, memory, tgt_mask=None, memory_mask=None):
        if self.norm_first:
            h = self.norm1(y)
            y = y + self.self_attn(h, h, h, tgt_mask)
            h = self.norm2(y)
            y = y + self.cross_attn(h, memory, memory, memory_mask)
            return y + self.ffn(self.norm3(y))
        y = self.norm1(y + self.self_attn(y, y, y, tgt_mask))
        y = self.norm2(y + self.cross_attn(y, memory, memory, memory_mask))
        return self.norm3(y + self.ffn(y))


# ------------------------------------------------- checking against PyTorch

def _copy_mha(ours, theirs):
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        theirs.out_proj.weight.copy_(ours.w_o.weight)
        theirs.out_proj.bias.copy_(ours.w_o.bias)


def _copy_common(ours, theirs, norms):
    _copy_mha(ours.self_attn, theirs.self_attn)
    theirs.linear1.load_state_dict(ours.ffn.linear1.state_dict())
    theirs.linear2.load_state_dict(ours.ffn.linear2.state_dict())
    for name in norms:
        getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())


def _torch_layer_kwargs(layer):
    d_model, d_ff = layer.ffn.linear1.in_features, layer.ffn.linear1.out_features
    activation = "gelu" if isinstance(layer.ffn.act, nn.GELU) else "relu"
    return dict(d_model=d_model, nhead=layer.self_attn.num_heads, dim_feedforward=d_ff,
                dropout=0.0, activation=activation, batch_first=True, norm_first=layer.norm_first)


def copy_to_torch_encoder_layer(layer: EncoderLayer) -> nn.TransformerEncoderLayer:
    """A `torch.nn.TransformerEncoderLayer` (dropout 0) with `layer`'s weights."""
    ref = nn.TransformerEncoderLayer(**_torch_layer_kwargs(layer))
    _copy_common(layer, ref, ("norm1", "norm2"))
    return ref.eval()


def copy_to_torch_decoder_layer(layer: DecoderLayer) -> nn.TransformerDecoderLayer:
    """A `torch.nn.TransformerDecoderLayer` (dropout 0) with `layer`'s weights;
    PyTorch calls the cross-attention `multihead_attn`."""
    ref = nn.TransformerDecoderLayer(**_torch_layer_kwargs(layer))
    _copy_common(layer, ref, ("norm1", "norm2", "norm3"))
    _copy_mha(layer.cross_attn, ref.multihead_attn)
    return ref.eval()


# ------------------------------------------------------------ the whole model

def padding_mask(tokens, pad_id):
    """bool [B, 1, T]: True at the keys that are real tokens, for every query."""
    return (tokens != pad_id).unsqueeze(1)


class Transformer(nn.Module):
    """Encoder-decoder Transformer: `forward(src [B,S], tgt_in [B,T]) -> logits [B,T,V]`.

    Embeddings are scaled by sqrt(d_model) and added to sinusoidal positions, as
    in the paper. One embedding table serves source, target and output head
    when `shared_vocab` (the paper shares them for its joint BPE vocabulary).
    """

    def __init__(self, vocab_size, max_len, d_model, num_heads, d_ff, n_enc, n_dec,
                 norm_first=True, pad_id=0, shared_vocab=True, tgt_vocab_size=None):
        super().__init__()
        self.pad_id, self.d_model, self.max_len = pad_id, d_model, max_len
        tgt_vocab_size = tgt_vocab_size or vocab_size
        self.src_emb = nn.Embedding(vocab_size, d_model)
        self.tgt_emb = self.src_emb if shared_vocab else nn.Embedding(tgt_vocab_size, d_model)
        # `_embed` multiplies by sqrt(d_model); the reference code (tensor2tensor)
        # draws the table with std d_model**-0.5 so that the product has unit
        # scale, like the positions. nn.Embedding's N(0, 1) would make it
        # sqrt(d_model) times larger, and a tied output head's first logits huge.
        nn.init.normal_(self.src_emb.weight, std=d_model ** -0.5)
        if not shared_vocab:
            nn.init.normal_(self.tgt_emb.weight, std=d_model ** -0.5)
        self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, norm_first) for _ in range(n_enc))
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, num_heads, d_ff, norm_first) for _ in range(n_dec))
        # Pre-LN leaves the last residual sum unnormalised: one LayerNorm each.
        self.enc_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.out = nn.Linear(d_model, tgt_vocab_size, bias=not shared_vocab)
        if shared_vocab:
            self.out.weight = self.tgt_emb.weight

    def _embed(self, emb, tokens):
        return emb(tokens) * math.sqrt(self.d_model) + self.pe[: tokens.size(1)]

    def encode(self, src):
        """memory [B, S, d_model]: one contextual vector per source token."""
        x, mask = self._embed(self.src_emb, src), padding_mask(src, self.pad_id)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.enc_norm(x)

    def decode(self, tgt_in, memory, src):
        """Next-token logits for every target position, given the encoder's memory."""
        T = tgt_in.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).tril()
        y, memory_mask = self._embed(self.tgt_emb, tgt_in), padding_mask(src, self.pad_id)
        for layer in self.decoder:
            y = layer(y, memory, causal, memory_mask)
        return self.out(self.dec_norm(y))

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src), src)


def transformer_num_parameters(vocab_size, d_model, d_ff, n_enc, n_dec, shared_embeddings=True):
    """Trainable parameters of the paper's layout (post-LN, biases everywhere,
    output head without a bias of its own when it shares the embedding)."""
    attention = 4 * (d_model * d_model + d_model)
    ffn = (d_model * d_ff + d_ff) + (d_ff * d_model + d_model)
    norm = 2 * d_model
    encoder_layer = attention + ffn + 2 * norm
    decoder_layer = 2 * attention + ffn + 3 * norm
    if shared_embeddings:
        embeddings = vocab_size * d_model
    else:
        embeddings = 2 * vocab_size * d_model + (d_model * vocab_size + vocab_size)
    return n_enc * encoder_layer + n_dec * decoder_layer + embeddings
