"""The shared data code: offline English-Chinese pairs, vocabulary, padding."""

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
