"""English-Chinese sentence pairs for the translation examples, and the
vocabulary and padding code every sequence-to-sequence chapter shares.

The pairs come from the PyPI package `hsk-sentences-audio` (HSK 3.0 graded
sentences with English translations), installed with the course, so nothing
is downloaded at run time.
"""
import random
import re
from collections import Counter
from dataclasses import dataclass, field

import torch

ATTRIBUTION = (
    "English-Chinese sentence pairs: the hsk-sentences-audio dataset "
    "(PyPI package hsk-sentences-audio 1.0.0, by the hsk-sentences-audio "
    "contributors), licensed CC BY-SA 4.0."
)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def tokenize_en(text):
    """Lower-cased words and punctuation marks: "I'm here." -> ["i'm", "here", "."]."""
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", text.lower())


def tokenize_zh(text):
    """One token per Chinese character (and per punctuation mark); spaces dropped."""
    return [ch for ch in text if not ch.isspace()]


class Vocab:
    """Token <-> id, with <pad>=0, <bos>=1, <eos>=2, <unk>=3 first."""

    def __init__(self, sentences, min_freq=1):
        counts = Counter(tok for sent in sentences for tok in sent)
        kept = sorted(t for t, c in counts.items() if c >= min_freq)
        self.itos = [PAD, BOS, EOS, UNK] + kept
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, eos=True):
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return ids + [self.eos_id] if eos else ids

    def decode(self, ids):
        """Tokens up to (not including) the first <eos>; <pad> and <bos> skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(self.itos[i])
        return out


def pad_batch(sequences, pad_id=Vocab.pad_id):
    """List of id lists -> (LongTensor [B, T_max] padded with pad_id, lengths [B])."""
    lengths = torch.tensor([len(s) for s in sequences])
    batch = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return batch, lengths


@dataclass
class TranslationData:
    """Tokenised pairs split into train and test, with one vocabulary per language."""

    train: list  # [(english tokens, chinese tokens)]
    test: list
    src_vocab: Vocab
    tgt_vocab: Vocab
    # `train` encoded and padded once, at the first `sample` (so `train` is not
    # to be changed after that).
    _encoded_train: tuple = field(default=None, init=False, repr=False, compare=False)

    def batch(self, pairs):
        """(src [B,S], src_lengths [B], tgt [B,T], tgt_lengths [B]); every
        sequence ends with <eos>, targets have no <bos> (see shift_right)."""
        src, src_len = pad_batch([self.src_vocab.encode(s) for s, _ in pairs])
        tgt, tgt_len = pad_batch([self.tgt_vocab.encode(t) for _, t in pairs])
        return src, src_len, tgt, tgt_len

    def sample(self, batch_size, generator):
        """`batch` of `batch_size` training pairs drawn at random, cut from the
        training pairs encoded once instead of encoding them again at every step
        (the same tensors: padded to the longest sentence of the batch)."""
        if self._encoded_train is None:
            self._encoded_train = self.batch(self.train)
        src, src_len, tgt, tgt_len = self._encoded_train
        idx = torch.randint(len(self.train), (batch_size,), generator=generator)
        S, T = int(src_len[idx].max()), int(tgt_len[idx].max())
        return src[idx, :S], src_len[idx], tgt[idx, :T], tgt_len[idx]


def english_chinese_pairs(max_level=6, max_en_tokens=8, max_zh_chars=10):
    """Tokenised (English, Chinese) pairs of HSK levels <= max_level that fit the limits."""
    from hsk_sentences_audio import load_sentences

    pairs = []
    for record in load_sentences():
        if record["hsk_level"] > max_level:
            continue
        en = tokenize_en(record["translation"]["en"])
        zh = tokenize_zh(record["chinese"])
        if len(en) <= max_en_tokens and len(zh) <= max_zh_chars:
            pairs.append((en, zh))
    return pairs


def load_translation(test_size=200, seed=0, **limits):
    """English -> Chinese data: a fixed shuffled split, vocabularies from the train part."""
    pairs = english_chinese_pairs(**limits)
    random.Random(seed).shuffle(pairs)
    test, train = pairs[:test_size], pairs[test_size:]
    return TranslationData(
        train=train,
        test=test,
        src_vocab=Vocab([s for s, _ in train]),
        tgt_vocab=Vocab([t for _, t in train]),
    )
