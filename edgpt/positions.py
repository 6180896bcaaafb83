"""Token embeddings and positional encodings, as built in the chapter
`embedding_vs_encoder`.

Both functions give every token a vector that depends on the token (or on its
position) alone: neither looks at the other tokens of the sequence. That is
the job of the encoder layers that come after them.
"""
import torch
import torch.nn.functional as F


def one_hot_embed(token_ids, E):
    """one_hot(token_ids, V) @ E for ids of any shape and a table E [V, D].

    Equals `E[token_ids]` and `nn.Embedding` with weight `E`; the result
    has shape `token_ids.shape + (D,)`.
    """
    V = E.shape[0]
    one_hot = F.one_hot(token_ids, num_classes=V).to(E.dtype)  # [..., V]
    return one_hot @ E


def sinusoidal_positional_encoding(max_len, d_model):
    """PE [max_len, d_model] of "Attention Is All You Need":

    PE[p, 2i]   = sin(p / 10000^(2i/d_model))
    PE[p, 2i+1] = cos(p / 10000^(2i/d_model))
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even to hold sin/cos pairs, got {d_model}")
    positions = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # [max_len, 1]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)  # 0, 2, 4, ..., d_model - 2
    angles = positions / 10000 ** (two_i / d_model)  # [max_len, d_model / 2]
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe
