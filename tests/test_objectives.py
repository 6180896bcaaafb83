"""Unit tests of edgpt/objectives.py: the attention masks of BERT, GPT and T5,
BERT's masking, T5's span corruption and the models the chapter `bert_gpt_t5`
trains."""
import math

import pytest
import torch

from edgpt.gpt import Block
from edgpt.objectives import (IGNORE_INDEX, KEPT, MASKED, NOT_CHOSEN, RANDOM, GPTClassifier, TinyBERT,
                              bidirectional_mask, causal_mask, dependency_matrix,
                              encoder_decoder_visibility, is_t5_sentinel, mlm_loss, mlm_mask,
                              prefix_lm_mask, random_spans_noise_mask, span_corrupt, span_restore)
from edgpt.transformer import DecoderLayer, EncoderLayer

torch.set_num_threads(1)


# ------------------------------------------------------------------ masks

def test_mask_patterns():
    assert bidirectional_mask(4).all() and bidirectional_mask(4).shape == (4, 4)
    assert bidirectional_mask(4).dtype == torch.bool
    expected = torch.tensor([[1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(prefix_lm_mask(5, 2), expected)
    assert torch.equal(prefix_lm_mask(6, 0), causal_mask(6))
    assert torch.equal(prefix_lm_mask(6, 1), causal_mask(6))  # a prefix of one is just causal
    assert torch.equal(prefix_lm_mask(6, 6), bidirectional_mask(6))
    with pytest.raises(ValueError):
        prefix_lm_mask(4, 5)


@pytest.mark.parametrize("S,T", [(1, 1), (3, 4), (5, 2)])
def test_encoder_decoder_visibility_is_the_prefix_lm_mask(S, T):
    vis = encoder_decoder_visibility(S, T)
    assert vis.shape == (S + T, S + T)
    assert not vis[:S, S:].any(), "the encoder must not see the output"
    assert vis[S:, :S].all(), "cross-attention sees the whole input"
    assert torch.equal(vis, prefix_lm_mask(S + T, S))


def test_dependency_matrix_recovers_each_family():
    torch.manual_seed(0)
    d, S, T = 16, 3, 4
    x = torch.randn(1, S + T, d)
    enc = EncoderLayer(d, 2, 32).eval()
    dec = DecoderLayer(d, 2, 32).eval()
    gpt_blocks = torch.nn.Sequential(Block(d, 2), Block(d, 2)).eval()

    assert torch.equal(dependency_matrix(lambda t: enc(enc(t)), x), bidirectional_mask(S + T))
    assert torch.equal(dependency_matrix(gpt_blocks, x), causal_mask(S + T))

    def encoder_decoder(t):
        memory = enc(t[:, :S])
        return torch.cat([memory, dec(t[:, S:], memory, causal_mask(T))], dim=1)

    assert torch.equal(dependency_matrix(encoder_decoder, x), prefix_lm_mask(S + T, S))
    # A decoder without its causal mask sees its own future: the measurement notices.
    leaky = lambda t: torch.cat([enc(t[:, :S]), dec(t[:, S:], enc(t[:, :S]))], dim=1)  # noqa: E731
    assert not torch.equal(dependency_matrix(leaky, x), prefix_lm_mask(S + T, S))


# ------------------------------------------------------- masked language model

PAD, CLS, SEP, MASK = 0, 1, 2, 3
V = 30


def _batch(B, T, generator):
    """Rows of [CLS] words [SEP] with varying amounts of padding after them."""
    tokens = torch.randint(4, V, (B, T), generator=generator)
    lengths = torch.randint(3, T + 1, (B,), generator=generator)
    for b, n in enumerate(lengths.tolist()):
        tokens[b, 0], tokens[b, n - 1] = CLS, SEP
        tokens[b, n:] = PAD
    return tokens, lengths


def test_mlm_split_and_counts_over_many_draws():
    g = torch.Generator().manual_seed(0)
    tokens, lengths = _batch(20000, 24, g)
    out = mlm_mask(tokens, MASK, V, generator=g, special_ids=(PAD, CLS, SEP))

    # Exactly round(15% of the real words) chosen in every row, never a special token.
    n_words = lengths - 2
    expected = (n_words * 0.15).round().clamp(min=1)
    assert torch.equal(out.chosen.sum(1), expected.long())
    assert not out.chosen[tokens <= SEP].any()

    # 80 / 10 / 10 among the chosen, measured: about 45,000 chosen positions,
    # so a standard error of 0.2 points on the 80% share.
    kinds = out.kind[out.chosen]
    shares = [(kinds == k).float().mean().item() for k in (MASKED, RANDOM, KEPT)]
    assert abs(shares[0] - 0.8) < 0.01 and abs(shares[1] - 0.1) < 0.01 and abs(shares[2] - 0.1) < 0.01

    # What the model reads is what each kind says.
    assert (out.inputs[out.kind == MASKED] == MASK).all()
    assert torch.equal(out.inputs[out.kind == KEPT], tokens[out.kind == KEPT])
    assert torch.equal(out.inputs[out.kind == NOT_CHOSEN], tokens[out.kind == NOT_CHOSEN])
    random_drawn = out.inputs[out.kind == RANDOM]
    assert (random_drawn > MASK).all(), "a random replacement must not be a special token"
    # Drawn uniformly from the 26 ordinary ids: every id's count near its mean.
    counts = torch.bincount(random_drawn - 4, minlength=V - 4).float()
    assert len(counts) == V - 4 and (counts - counts.mean()).abs().max() < 5 * counts.mean().sqrt()
    # Labels: the original token where chosen, IGNORE_INDEX elsewhere.
    assert torch.equal(out.labels[out.chosen], tokens[out.chosen])
    assert (out.labels[~out.chosen] == IGNORE_INDEX).all()


def test_mlm_chooses_positions_uniformly():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, V, (20000, 10), generator=g)  # no specials: 10 candidates, 2 chosen
    out = mlm_mask(tokens, MASK, V, generator=g)
    per_position = out.chosen.float().mean(0)
    assert torch.allclose(per_position, torch.full((10,), 0.2), atol=0.015)


def test_mlm_short_rows_get_one_and_input_is_untouched():
    tokens = torch.tensor([[CLS, 7, SEP], [CLS, 8, 9]])
    before = tokens.clone()
    out = mlm_mask(tokens, MASK, V, generator=torch.Generator().manual_seed(0), special_ids=(CLS, SEP))
    assert torch.equal(tokens, before)
    assert out.chosen.sum(1).tolist() == [1, 1]  # round(0.15) = 0, but at least one


def test_mlm_is_reproducible_with_a_generator():
    tokens = torch.randint(4, V, (8, 16), generator=torch.Generator().manual_seed(0))
    a = mlm_mask(tokens, MASK, V, generator=torch.Generator().manual_seed(5))
    b = mlm_mask(tokens, MASK, V, generator=torch.Generator().manual_seed(5))
    c = mlm_mask(tokens, MASK, V, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.kind, b.kind)
    assert not torch.equal(a.kind, c.kind)


def test_mlm_rejects_a_bad_split():
    with pytest.raises(ValueError):
        mlm_mask(torch.ones(1, 4, dtype=torch.long) * 5, MASK, V, split=(0.8, 0.1, 0.2))


def test_mlm_loss_counts_the_chosen_positions_only():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, V, (4, 20), generator=g)
    out = mlm_mask(tokens, MASK, V, generator=g)
    logits = torch.randn(4, 20, V, generator=g, requires_grad=True)
    loss = mlm_loss(logits, out.labels)
    by_hand = -torch.log_softmax(logits, -1)[out.chosen].gather(1, tokens[out.chosen][:, None]).mean()
    assert torch.allclose(loss, by_hand)
    loss.backward()
    assert (logits.grad[~out.chosen] == 0).all() and (logits.grad[out.chosen] != 0).any(-1).all()


# ------------------------------------------------------------ span corruption

def test_span_corrupt_reproduces_the_t5_paper_example():
    words = "Thank you for inviting me to your party last week .".split()
    mask = [w in ("for", "inviting", "last") for w in words]
    inputs, targets = span_corrupt(words, mask)
    assert " ".join(inputs) == "Thank you <extra_id_0> me to your party <extra_id_1> week ."
    assert " ".join(targets) == "<extra_id_0> for inviting <extra_id_1> last <extra_id_2>"
    assert span_restore(inputs, targets) == words


def test_noise_mask_counts_and_structure():
    g = torch.Generator().manual_seed(0)
    for length in range(2, 80):
        for density, mean_span in [(0.15, 3.0), (0.5, 2.0), (0.3, 8.0)]:
            mask = random_spans_noise_mask(length, density, mean_span, generator=g)
            assert mask.dtype == torch.bool and mask.shape == (length,)
            n_noise = min(max(round(length * density), 1), length - 1)
            assert mask.sum().item() == n_noise
            runs = int(mask[0]) + int((mask[1:] & ~mask[:-1]).sum())
            assert runs == min(max(round(n_noise / mean_span), 1), n_noise, length - n_noise)
            assert not mask[0] and mask[-1], "T5 starts with a kept run and ends with a dropped one"


def test_noise_mask_varies_and_covers_every_inner_position():
    g = torch.Generator().manual_seed(0)
    masks = torch.stack([random_spans_noise_mask(40, generator=g) for _ in range(2000)])
    # 6 dropped tokens in 2 runs (5 ways to split them) between 34 kept ones in
    # 2 runs (33 ways): 165 possible masks, each drawn about 12 times.
    counts = torch.unique(masks, dim=0, return_counts=True)[1]
    assert len(counts) == math.comb(5, 1) * math.comb(33, 1) and counts.min() >= 2
    assert (masks[:, 1:].float().mean(0) > 0.02).all()


def test_noise_mask_with_a_random_roll():
    g = torch.Generator().manual_seed(0)
    plain = torch.stack([random_spans_noise_mask(11, generator=g) for _ in range(200)])
    assert (plain == plain[0]).all() and plain[0, -2:].all(), "one span of 2 in 11: always the last two"
    rolled = torch.stack([random_spans_noise_mask(11, generator=g, random_roll=True) for _ in range(2000)])
    assert (rolled.sum(1) == 2).all()
    assert torch.allclose(rolled.float().mean(0), torch.full((11,), 2 / 11), atol=0.04)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("random_roll", [False, True])
def test_span_corruption_round_trips(seed, random_roll):
    g = torch.Generator().manual_seed(seed)
    for length in range(2, 60):
        tokens = [f"w{i}" for i in torch.randint(0, 1000, (length,), generator=g).tolist()]
        mask = random_spans_noise_mask(length, generator=g, random_roll=random_roll)
        inputs, targets = span_corrupt(tokens, mask)
        assert span_restore(inputs, targets) == tokens
        n_spans = sum(is_t5_sentinel(t) for t in inputs)
        assert sum(is_t5_sentinel(t) for t in targets) == n_spans + 1  # plus the closing one
        assert len(inputs) == length - int(mask.sum()) + n_spans
        assert len(targets) == int(mask.sum()) + n_spans + 1


def test_span_corruption_with_ids_and_a_custom_sentinel():
    vocab = 32100  # T5 counts its sentinels down from the end of the vocabulary
    sentinel = lambda i: vocab - 1 - i  # noqa: E731
    tokens = [5, 6, 7, 8, 9, 10]
    mask = [False, True, True, False, True, False]
    inputs, targets = span_corrupt(tokens, mask, sentinel=sentinel)
    assert inputs == [5, 32099, 8, 32098, 10]
    assert targets == [32099, 6, 7, 32098, 9, 32097]
    assert span_restore(inputs, targets, is_sentinel=lambda t: t >= 32000) == tokens
    with pytest.raises(ValueError):
        span_corrupt(tokens, mask[:-1])


# ------------------------------------------------------------------ models

def test_gpt_classifier_reads_the_right_position():
    torch.manual_seed(0)
    idx = torch.randint(0, 20, (3, 8))
    changed = idx.clone()
    changed[:, 1:] = (changed[:, 1:] + 1) % 20  # every token but the first
    first = GPTClassifier(20, 8, 16, 2, 2, num_classes=3, read="first").eval()
    last = GPTClassifier(20, 8, 16, 2, 2, num_classes=3, read="last").eval()
    with torch.no_grad():
        assert first(idx).shape == (3, 3)
        assert torch.allclose(first(idx), first(changed), atol=1e-6), "position 0 sees only itself"
        assert not torch.allclose(last(idx), last(changed), atol=1e-3)
        # With lengths, the last real token is read: padding after it changes nothing.
        lengths = torch.tensor([5, 8, 3])
        padded = idx.clone()
        padded[0, 5:], padded[2, 3:] = 0, 0
        assert torch.allclose(last(idx, lengths), last(padded, lengths), atol=1e-6)
        assert torch.allclose(last(idx, lengths)[1], last(idx)[1], atol=1e-6)
    with pytest.raises(ValueError):
        GPTClassifier(20, 8, 16, 2, 2, num_classes=3, read="middle")


def test_tiny_bert_is_bidirectional():
    torch.manual_seed(0)
    model = TinyBERT(20, 8, 16, 2, 2).eval()
    idx = torch.randint(0, 20, (1, 8))
    with torch.no_grad():
        out = model(idx)
        later = idx.clone()
        later[0, -1] = (later[0, -1] + 1) % 20
        assert out.shape == (1, 8, 20)
        assert not torch.allclose(model(later)[0, 0], out[0, 0], atol=1e-4), "position 0 must see the last token"


def test_gpt_classifier_learns_a_whole_sequence_task_only_when_reading_last():
    """Does the sequence contain token 1 anywhere? Only the last position can know."""
    from edgpt.train import accuracy, train

    def batch(n, g):
        x = torch.randint(2, 10, (n, 6), generator=g)
        y = torch.randint(0, 2, (n,), generator=g)
        where = torch.randint(0, 6, (n,), generator=g)
        x[y == 1, where[y == 1]] = 1
        return x, y

    test_x, test_y = batch(1000, torch.Generator().manual_seed(1))
    scores = {}
    for read in ("first", "last"):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        model = GPTClassifier(10, 6, 16, 1, 2, num_classes=2, read=read)
        train(model, lambda step: batch(64, g), steps=150, lr=1e-2, desc=read)
        scores[read] = accuracy(model, test_x, test_y)
    assert scores["last"] > 0.95 and scores["first"] < 0.70, scores
    assert math.isfinite(scores["first"])
