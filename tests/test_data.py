"""The shared data code: offline English-Chinese pairs, vocabulary, padding."""

import torch

from edgpt.data import ATTRIBUTION, Vocab, load_translation, pad_batch, tokenize_en, tokenize_zh


def test_tokenizers():
    assert tokenize_en("I am a student.") == ["i", "am", "a", "student", "."]
    assert tokenize_en("It's OK!") == ["it's", "ok", "!"]
    assert tokenize_zh("我是 一个学生。") == ["我", "是", "一", "个", "学", "生", "。"]


def test_vocab_round_trip_and_specials():
    v = Vocab([["a", "b"], ["b", "c"]])
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    ids = v.encode(["c", "a", "zzz"])
    assert ids[-1] == v.eos_id and ids[2] == v.unk_id
    assert v.decode(ids + [v.stoi["b"]]) == ["c", "a", "<unk>"]  # stops at <eos>


def test_pad_batch():
    batch, lengths = pad_batch([[5, 6, 7], [8]])
    assert batch.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]


def test_translation_pairs_load_offline_and_split_deterministically():
    a, b = load_translation(max_level=2), load_translation(max_level=2)
    assert len(a.train) > 300 and len(a.test) == 200
    assert a.train[:5] == b.train[:5] and a.test == b.test
    src, src_len, tgt, tgt_len = a.batch(a.train[:3])
    assert src.shape[0] == 3 and int(src_len.max()) == src.shape[1]
    assert all(int(tgt[i, tgt_len[i] - 1]) == a.tgt_vocab.eos_id for i in range(3))
    assert "CC BY-SA 4.0" in ATTRIBUTION


def test_sample_cuts_the_batch_that_encoding_the_drawn_pairs_gives():
    # `sample` encodes the training pairs once; a batch cut from them must equal
    # `batch` of the same drawn pairs, padding width included.
    data = load_translation(max_level=2)
    for seed in range(3):
        idx = torch.randint(len(data.train), (64,), generator=torch.Generator().manual_seed(seed)).tolist()
        expected = data.batch([data.train[i] for i in idx])
        got = data.sample(64, torch.Generator().manual_seed(seed))
        assert len(got) == 4 and all(torch.equal(a, b) for a, b in zip(got, expected))
    one = data.sample(1, torch.Generator().manual_seed(0))
    assert one[0].shape[1] == int(one[1][0])  # cut to the longest sentence of the batch
