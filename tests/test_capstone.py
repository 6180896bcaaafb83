"""Grading of the `capstone` assignment with the course's grader (see
tests/test_multi_head_attention.py for what each test promises), and direct
tests of `edgpt.capstone`, the helpers of the book chapter."""
import pytest
import torch

from edgpt.capstone import (EOS, PAD, SEP, SRC_LEN, TGT_LEN, VOCAB, decoder_only_batch,
                            decoder_only_greedy, decoder_only_greedy_cached, draw_numbers,
                            encode_pairs, encoder_decoder_greedy, exact_match, held_out_numbers,
                            number_to_words, pack_source_target, teacher_forcing_batch, to_text,
                            visibility)
from edgpt.gpt import GPT
from edgpt.transformer import Transformer
from grading import catalog_tests, solution_namespace

ASSIGNMENT = "capstone"
MAX_POINTS = 12.0

PACK = "pack_source_target"
GREEDY = "decoder_only_greedy"
EM = "exact_match"

# name -> (answer cell, [(solution text, replaced by)], test cell that must
# lose its points, words its failure message must contain)
WRONG = {
    "loss_on_source_positions": (PACK, [("    targets[:, :S] = ignore_index\n", "")],
                                 "test_pack_source_target_hidden", "the loss would be taken on source positions"),
    "ignore_mask_one_short": (PACK, [("targets[:, :S] = ignore_index", "targets[:, :S - 1] = ignore_index")],
                              "test_pack_source_target_hidden", "ignore mask off by one"),
    "ignore_mask_one_long": (PACK, [("targets[:, :S] = ignore_index", "targets[:, :S + 1] = ignore_index")],
                             "test_pack_source_target_hidden", "the first target token (predicted at <sep>) is ignored"),
    "sep_left_out": (PACK, [("torch.cat([src, sep, tgt], dim=1)", "torch.cat([src, tgt], dim=1)")],
                     "test_pack_source_target_hidden", "<sep> is missing"),
    "targets_not_shifted": (PACK, [("targets = seq[:, 1:].clone()", "targets = seq[:, :-1].clone()")],
                            "test_pack_source_target_hidden", "the targets are not shifted"),
    "targets_a_view_of_the_inputs": (PACK, [("targets = seq[:, 1:].clone()", "targets = seq[:, 1:]")],
                                     "test_pack_source_target_hidden", "clone()"),
    "ignore_index_hard_coded": (PACK, [("targets[:, :S] = ignore_index", "targets[:, :S] = -100")],
                                "test_pack_source_target_hidden", "use the ignore_index argument"),
    "prompt_returned": (GREEDY, [("return idx[:, S + 1:]", "return idx")],
                        "test_decoder_only_greedy_hidden", "the prompt (src and <sep>) is returned too"),
    "logits_of_position_0": (GREEDY, [("logits[:, -1].argmax(dim=-1)", "logits[:, 0].argmax(dim=-1)")],
                             "test_decoder_only_greedy_hidden", "the logits of position 0 were used"),
    "rows_not_frozen_after_eos": (GREEDY, [(
        "        next_token = torch.where(done, torch.full_like(next_token, eos_id), next_token)\n", "")],
        "test_decoder_only_greedy_hidden", "rows are not frozen after eos"),
    "prompt_without_sep": (GREEDY, [("idx = torch.cat([src, sep], dim=1)", "idx = src")],
                           "test_decoder_only_greedy_hidden", "<sep> is missing from the prompt"),
    "only_the_newest_token_fed": (GREEDY, [("logits = model(idx)", "logits = model(idx[:, -1:])")],
                                  "test_decoder_only_greedy_hidden", "not on the newest token alone"),
    "token_accuracy": (EM, [("    return sum(same) / len(same)\n",
                             "    width = min(pred.size(1), tgt.size(1))\n"
                             "    return (pred[:, :width] == tgt[:, :width]).float().mean().item()\n")],
                       "test_exact_match_hidden", "token accuracy"),
    "tokens_after_eos_compared": (EM, [("torch.equal(cut(p), cut(t))", "torch.equal(p, t)")],
                                  "test_exact_match_hidden", "tokens after eos were compared"),
    "eos_cut_off": (EM, [("row[: int(hits[0]) + 1]", "row[: int(hits[0])]")],
                    "test_exact_match_hidden", "the eos_id itself was left out"),
    "target_not_cut": (EM, [("torch.equal(cut(p), cut(t))", "torch.equal(cut(p), t)")],
                       "test_exact_match_hidden", "only the prediction was cut"),
    "count_not_share": (EM, [("return sum(same) / len(same)", "return sum(same)")],
                        "test_exact_match_hidden", "return their share"),
}

CORRECT = {
    "vectorised_and_padded": {
        PACK: '''
def pack_source_target(src, tgt, sep_id, ignore_index=-100):
    B, S = src.shape
    inputs = torch.cat([src, src.new_full((B, 1), sep_id), tgt[:, :-1]], dim=1)
    targets = torch.cat([src.new_full((B, S), ignore_index), tgt], dim=1)
    return inputs, targets
''',
        GREEDY: '''
@torch.no_grad()
def decoder_only_greedy(model, src, sep_id, eos_id, max_new_tokens):
    """Stops as soon as every row is finished; the rest is eos."""
    seq = F.pad(src, (0, 1), value=sep_id)
    out = torch.full((src.size(0), max_new_tokens), eos_id, dtype=torch.long)
    alive = torch.ones(src.size(0), dtype=torch.bool)
    for step in range(max_new_tokens):
        if not alive.any():
            break
        token = torch.max(model(seq)[:, -1, :], dim=-1).indices
        token = torch.where(alive, token, eos_id)
        out[:, step] = token
        alive &= token != eos_id
        seq = torch.cat((seq, token.unsqueeze(-1)), dim=-1)
    return out
''',
        EM: '''
def exact_match(pred, tgt, eos_id):
    """Everything after the first eos becomes -1, both padded to one width with -1."""
    width = max(pred.size(1), tgt.size(1))

    def canonical(x):
        x = F.pad(x, (0, width - x.size(1)), value=-1)
        is_eos = (x == eos_id).long()
        after_first_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
        return x.masked_fill(after_first_eos, -1)

    return (canonical(pred) == canonical(tgt)).all(dim=1).float().mean().item()
''',
    },
    "row_by_row_with_warnings": {
        PACK: '''
import warnings

def pack_source_target(src, tgt, sep_id, ignore_index=-100):
    warnings.warn("packing row by row", UserWarning)
    print("packing", src.shape[0], "pairs")
    inputs, targets = [], []
    for s, t in zip(src.tolist(), tgt.tolist()):
        seq = s + [sep_id] + t
        inputs.append(seq[:-1])
        targets.append([ignore_index] * len(s) + seq[len(s) + 1:])
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)
''',
        GREEDY: '''
import warnings

def decoder_only_greedy(model, src, sep_id, eos_id, max_new_tokens):
    """One row at a time, each as a batch of one."""
    warnings.warn("decoding one row at a time", UserWarning)
    rows = []
    with torch.no_grad():
        for row in src:
            seq = torch.cat([row, torch.tensor([sep_id])])[None]
            new = []
            while len(new) < max_new_tokens:
                if new and new[-1] == eos_id:
                    new.append(eos_id)
                    continue
                token = int(model(seq)[0, seq.shape[1] - 1].argmax())
                new.append(token)
                seq = torch.cat([seq, torch.tensor([[token]])], dim=1)
            rows.append(new)
    print("decoded", len(rows), "rows")
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), max_new_tokens)
''',
        EM: '''
def exact_match(pred, tgt, eos_id):
    def until_eos(tokens):
        return tokens[: tokens.index(eos_id) + 1] if eos_id in tokens else tokens

    rows = list(zip(pred.tolist(), tgt.tolist()))
    hits = sum(1 for p, t in rows if until_eos(p) == until_eos(t))
    return float(hits) / len(rows)
''',
    },
}

globals().update(catalog_tests(ASSIGNMENT, MAX_POINTS, WRONG, CORRECT, items=(PACK, GREEDY, EM), time_limit=90))


# --------------------------------------------- edgpt.capstone, the book's helpers (fast)

def test_number_words():
    assert number_to_words(0) == ["zero"]
    assert " ".join(number_to_words(407)) == "four hundred seven"
    assert " ".join(number_to_words(12030)) == "twelve thousand thirty"
    assert " ".join(number_to_words(100000)) == "one hundred thousand"
    assert " ".join(number_to_words(999999)) == "nine hundred ninety nine thousand nine hundred ninety nine"
    assert max(len(number_to_words(n)) for n in range(0, 10**6, 7)) + 1 == TGT_LEN  # 9 words and <eos>
    with pytest.raises(ValueError):
        number_to_words(10**6)


def test_encode_pairs_and_text():
    src, tgt = encode_pairs([407, 999999, 5])
    assert src.shape == (3, SRC_LEN) and tgt.shape == (3, TGT_LEN)
    assert [VOCAB[i] for i in src[0]] == ["4", "0", "7", "<eos>", "<pad>", "<pad>", "<pad>"]
    assert (src[1] != PAD).all() and src[1, -1] == EOS and (tgt[1] != PAD).all() and tgt[1, -1] == EOS
    assert [to_text(r) for r in src] == ["407", "999999", "5"]
    assert to_text(tgt[0]) == "four hundred seven"


def test_held_out_numbers_are_never_drawn_for_training():
    g = torch.Generator().manual_seed(0)
    test = held_out_numbers(50, g)
    assert len(set(test)) == len(test) == 200 and {len(str(n)) for n in test} == {3, 4, 5, 6}
    train = draw_numbers(5000, g, exclude=set(test))
    assert len(train) == 5000 and not set(train) & set(test)
    assert min(train) >= 0 and max(train) < 10**6
    lengths = torch.bincount(torch.tensor([len(str(n)) for n in train]), minlength=7)[1:].float()
    assert (lengths[1:] > lengths[:-1]).all()  # longer numbers are drawn more often


def test_batches_of_both_models_grade_the_same_tokens():
    src, tgt = encode_pairs([407, 12030, 5])
    _, y_ed = teacher_forcing_batch(src, tgt, SEP)
    x_do, y_do = decoder_only_batch(src, tgt, SEP)
    assert torch.equal(y_do[:, SRC_LEN:], y_ed)
    assert (y_do[:, :SRC_LEN] == -100).all() and (x_do[:, SRC_LEN] == SEP).all()


def test_the_assignment_solution_agrees_with_edgpt():
    ns = solution_namespace(ASSIGNMENT)
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(3, 40, (4, 5), generator=g), torch.randint(3, 40, (4, 6), generator=g)
    for a, b in zip(ns["pack_source_target"](src, tgt, 1, -7), pack_source_target(src, tgt, 1, -7)):
        assert torch.equal(a, b)
    model = GPT(13, 16, 16, 1, 2).eval()
    prompt = torch.randint(3, 13, (5, 3), generator=g)
    ours = decoder_only_greedy(model, prompt, 1, 2, 8)
    assert torch.equal(ns["decoder_only_greedy"](model, prompt, 1, 2, 8), ours)
    pred, target = torch.randint(0, 4, (30, 6), generator=g), torch.randint(0, 4, (30, 5), generator=g)
    assert ns["exact_match"](pred, target, 2) == exact_match(pred, target, 2)


def test_cached_greedy_gives_the_tokens_of_plain_greedy():
    torch.manual_seed(0)
    model = GPT(len(VOCAB), SRC_LEN + 1 + TGT_LEN, 32, 2, 4).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so that the rows differ
        for p in model.parameters():
            p.normal_(0, 0.3)
    src, _ = encode_pairs([407, 12030, 5, 999999])
    plain = decoder_only_greedy(model, src, SEP, EOS, TGT_LEN)
    assert torch.equal(decoder_only_greedy_cached(model, src, SEP, EOS, TGT_LEN), plain)
    after_eos = (plain == EOS).cummax(dim=1).values
    assert (plain[after_eos] == EOS).all()


def test_encoder_decoder_greedy_freezes_finished_rows():
    torch.manual_seed(0)
    model = Transformer(len(VOCAB), 16, 32, 4, 64, 1, 1).eval()
    src, _ = encode_pairs([407, 12030, 5])
    out = encoder_decoder_greedy(model, src, SEP, EOS, TGT_LEN)
    assert out.shape == (3, TGT_LEN) and out.dtype == torch.long
    after_eos = (out == EOS).cummax(dim=1).values
    assert (out[after_eos] == EOS).all()


def test_visibility_masks():
    S, T = 4, 3
    ed, do, prefix = (visibility(S, T, kind) for kind in ("encoder-decoder", "decoder-only", "prefix-LM"))
    assert torch.equal(do, torch.ones(8, 8, dtype=torch.bool).tril())
    assert torch.equal(ed[S + 1:], prefix[S + 1:]) and ed[:S, :S].all() and prefix[:S + 1, :S + 1].all()
    assert not ed[:S, S:].any() and not prefix[:S + 1, S + 1:].any()
    with pytest.raises(ValueError):
        visibility(S, T, "bidirectional")
