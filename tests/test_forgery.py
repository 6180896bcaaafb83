"""Forging or copying a grade, as a student inside the sandbox's rules would
try it: the verdict may depend only on what the graded names return.

Each fixture is a wrong (or right) implementation plus a trick. Its exact
expected score is either written out or "as `control`": the score of the same
implementation without the trick, graded in the same run. Every class is
graded in parallel and one by one, with an honest student beside the hostile
ones; both runs must agree.
"""
import functools
import json

import pytest
from grading import answer_cells, item_of, make_submission, mutate, notebook_path

from autograder import SOURCE_DIR
from autograder.course import open_course
from autograder.grading import sandboxed_autograde
from autograder.sandbox import course_files
from autograder.trusted import _top_level_names, assignment_info

pytestmark = pytest.mark.slow
TIMEOUT, BUDGET = 20, 120
COURSE = "uses the course's implementation instead of your own"


def points(assignment):
    nb = json.loads(notebook_path(assignment, SOURCE_DIR).read_text(encoding="utf-8"))
    return {c["metadata"]["nbgrader"]["grade_id"]: float(c["metadata"]["nbgrader"]["points"])
            for c in nb["cells"] if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")}


def scores(assignment, losing=()):
    """Full marks except every test of the answer cells in `losing`."""
    return {t: 0.0 if item_of(assignment)[t] in losing else p for t, p in points(assignment).items()}


def losing_only(assignment, *tests):
    """Full marks except the tests named."""
    return {t: 0.0 if t in tests else p for t, p in points(assignment).items()}


# ------------------------------------------------------------------ multi_head_attention
MHA = answer_cells("multi_head_attention")
WRONG_SDPA = mutate(MHA["sdpa"], [(" / math.sqrt(d_k)", "")])
WRONG_MHA = mutate(MHA["mha"], [("return self.w_o(merge_heads(out))", "return merge_heads(out)")])
ZEROES_ITS_INPUTS = mutate(MHA["mha"], [("        q = split_heads(", "        with torch.no_grad():\n"
                                         "            for t in (query, key, value):\n                t.zero_()\n"
                                         "            if mask is not None:\n                mask.fill_(True)\n"
                                         "        q = split_heads(")])
SHADOWS_HELPERS = "\n\ndef _close(a, b):\n    return True\n\n\nclass _Anything:\n    def __eq__(self, other):\n" \
                  "        return True\n\n\n_g = None\n"
SHADOWS_BUILTINS = ("\n\ndef isinstance(*args):\n    return True\n\n\ndef all(*args):\n    return True\n\n\n"
                    "def bool(*args):\n    return True\n\n\ntuple = lambda *args: ()\n")

# The reference merge_heads is bound in the student's process while another
# item's test runs; kept for later, it no longer answers.
KEEPS_A_REFERENCE = (MHA["sdpa"] + "\n\n_kept = {}\n_own = scaled_dot_product_attention\n\n\n"
                     "def scaled_dot_product_attention(*args, **kwargs):\n"
                     "    _kept.setdefault('merge', globals().get('merge_heads'))\n    return _own(*args, **kwargs)\n")
PASSES_OFF_THE_REFERENCE = "def merge_heads(x):\n    return _kept['merge'](x)\n"

MHA_CASES = {
    "honest": (MHA, scores("multi_head_attention")),
    # Without its output projection, MultiHeadAttention passes the visible test
    # (shapes) and fails the hidden one.
    "control_wrong_mha": ({**MHA, "mha": WRONG_MHA}, losing_only("multi_head_attention", "test_mha_hidden")),
    "shadows_the_hidden_tests_helpers": ({**MHA, **{c: MHA[c] + SHADOWS_HELPERS for c in MHA},
                                          "mha": WRONG_MHA + SHADOWS_HELPERS}, "control_wrong_mha"),
    "shadows_builtins": ({**MHA, "mha": WRONG_MHA + SHADOWS_BUILTINS}, "control_wrong_mha"),
    "changes_its_inputs_in_place": ({**MHA, "mha": ZEROES_ITS_INPUTS}, scores("multi_head_attention", ["mha"])),
    # One mistake, one item: MultiHeadAttention's tests run the student's class
    # with the reference attention, split and merge.
    "wrong_attention_only": ({**MHA, "sdpa": WRONG_SDPA}, scores("multi_head_attention", ["sdpa"])),
    "keeps_a_reference_for_later": ({**MHA, "sdpa": KEEPS_A_REFERENCE, "merge_heads": PASSES_OFF_THE_REFERENCE},
                                    scores("multi_head_attention", ["merge_heads"])),
    # A wrong attention in a later cell: the attention's own tests ran before
    # it, and MultiHeadAttention's tests use the reference attention.
    "redefines_attention_wrong_in_a_later_cell": ({**MHA, "mha": WRONG_SDPA + "\n\n" + MHA["mha"]},
                                                  scores("multi_head_attention")),
    "defines_mha_twice_right_then_wrong": ({**MHA, "mha": MHA["mha"] + "\n\n" + WRONG_MHA}, "control_wrong_mha"),
}

# ------------------------------------------------------------------ feed_forward
FF = answer_cells("feed_forward")
WRONG_FFN = mutate(FF["ffn"], [("self.linear2(self.act(self.linear1(x)))", "self.linear2(self.linear1(x))")])
# The student's side rewrites how its modules are described, so that the
# grader's mirror of linear2 would call the student's code: its `forward`
# returns the student's (wrong) output for the input the FFN last saw.
PLANTS_FORWARD = '''
import sys as _sys
_last = {}
_Worker = _sys.modules["autograder.worker"].Worker
_describe = _Worker.describe_module


def _planted(self, m):
    d = _describe(self, m)
    if d["class"] == "Linear":
        d["attrs"]["forward"] = self.out(lambda h: _last["out"])
        d["attrs"]["__call__"] = self.out(lambda h: _last["out"])
    return d


_Worker.describe_module = _planted
_forward = PositionwiseFeedForward.forward


def _remember(self, x):
    _last["out"] = _forward(self, x)
    return _last["out"]


PositionwiseFeedForward.forward = _remember
'''
COUNT = FF["ffn_num_parameters"]
FF_CASES = {
    "honest": (FF, scores("feed_forward")),
    "control_wrong_ffn": ({**FF, "ffn": WRONG_FFN}, scores("feed_forward", ["ffn"])),
    "plants_forward_on_its_linear_layers": ({**FF, "ffn": WRONG_FFN + PLANTS_FORWARD}, "control_wrong_ffn"),
    "shadows_bool_and_isinstance": ({**FF, "ffn": WRONG_FFN + SHADOWS_BUILTINS}, "control_wrong_ffn"),
    "imports_the_course_module": ({**FF, "ffn": "from edgpt.feed_forward import PositionwiseFeedForward\n"},
                                  scores("feed_forward", ["ffn"])),
    "count_as_a_lambda": ({**FF, "ffn_num_parameters": "ffn_num_parameters = lambda d_model, d_ff: "
                                                       "2 * d_model * d_ff + d_model + d_ff\n"}, scores("feed_forward")),
    "count_as_a_partial": ({**FF, "ffn_num_parameters": "import functools\n\n\ndef _count(bias, d_model, d_ff):\n"
                                                        "    return 2 * d_model * d_ff + bias * (d_model + d_ff)\n\n\n"
                                                        "ffn_num_parameters = functools.partial(_count, 1)\n"},
                           scores("feed_forward")),
    "count_as_a_callable_instance": ({**FF, "ffn_num_parameters": "class _Count:\n    def __call__(self, d_model, "
                                                                  "d_ff):\n        return 2 * d_model * d_ff + "
                                                                  "d_model + d_ff\n\n\nffn_num_parameters = _Count()\n"},
                                     scores("feed_forward")),
    "right_in_an_added_cell_after_a_wrong_one": (lambda path: _add_cell(path, "feed_forward", FF, "ffn",
                                                                          WRONG_FFN, FF["ffn"]), scores("feed_forward")),
    "wrong_in_an_added_cell_after_a_right_one": (lambda path: _add_cell(path, "feed_forward", FF, "ffn",
                                                                          FF["ffn"], WRONG_FFN), "control_wrong_ffn"),
}

# ------------------------------------------------------------------ causal_masking
CM = answer_cells("causal_masking")
WRONG_CSA = mutate(CM["causal_self_attention"], [("return self.c_proj(merge_heads(weights @ v))",
                                                  "return merge_heads(weights @ v)")])
WRONG_MASK = mutate(CM["causal_mask"], [(".tril()", ".triu()")])
SHADOWS_LOCKED = "\n\ndef split_heads(x, num_heads):\n    return x\n\n\ndef merge_heads(x):\n    return x\n"
CM_CASES = {
    "honest": (CM, scores("causal_masking")),
    "control_wrong_csa": ({**CM, "causal_self_attention": WRONG_CSA}, scores("causal_masking", ["causal_self_attention"])),
    "shadows_locked_names": ({**CM, "causal_self_attention": WRONG_CSA + SHADOWS_LOCKED,
                              "gpt2_num_parameters": CM["gpt2_num_parameters"] + SHADOWS_LOCKED},
                             scores("causal_masking", ["causal_self_attention"])),
    "wrong_mask_only": ({**CM, "causal_mask": WRONG_MASK}, scores("causal_masking", ["causal_mask"])),
}

# ------------------------------------------------------------------ transformer
TR = answer_cells("transformer")
TR_CASES = {
    "honest": (TR, scores("transformer")),
    "imports_the_course_layers": ({**TR, "encoder_layer": "from edgpt.transformer import EncoderLayer\n",
                                   "decoder_layer": "from edgpt.transformer import DecoderLayer\n"},
                                  scores("transformer", ["encoder_layer", "decoder_layer"])),
    "binds_a_course_class": ({**TR, "encoder_layer": "EncoderLayer = MultiHeadAttention\n"},
                             scores("transformer", ["encoder_layer"])),
    "methods_from_the_course": ({**TR, "encoder_layer": "from edgpt.feed_forward import PositionwiseFeedForward\n\n\n"
                                                        "class EncoderLayer(nn.Module):\n"
                                                        "    __init__ = PositionwiseFeedForward.__init__\n"
                                                        "    forward = PositionwiseFeedForward.forward\n"},
                                scores("transformer", ["encoder_layer"])),
    "shadows_a_locked_class": ({**TR, "transformer_num_parameters": TR["transformer_num_parameters"]
                                + "\n\nclass MultiHeadAttention:\n    pass\n"}, scores("transformer")),
}

CLASSES = {"multi_head_attention": MHA_CASES, "feed_forward": FF_CASES, "causal_masking": CM_CASES,
           "transformer": TR_CASES}
# Whose messages must say that the course's own code was used.
COURSE_MESSAGES = {("multi_head_attention", "keeps_a_reference_for_later"), ("transformer", "binds_a_course_class"), ("transformer", "methods_from_the_course")}


def _add_cell(path, assignment, answers, after, code, added):
    """`answers`, with `code` in cell `after` and a cell the student added right after it."""
    make_submission(assignment, path, {**answers, after: code})
    nb = json.loads(path.read_text(encoding="utf-8"))
    at = next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == after)
    nb["cells"].insert(at + 1, {"cell_type": "code", "metadata": {}, "source": added, "outputs": [],
                                "execution_count": None})
    path.write_text(json.dumps(nb), encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _graded(assignment, tmp):
    from pathlib import Path

    runs = {}
    for run, jobs in (("parallel", 2), ("one_by_one", 1)):
        course = open_course(Path(tmp) / assignment / run / "course", assignment)
        submissions = {}
        for name, (answers, _) in CLASSES[assignment].items():
            path = Path(tmp) / assignment / run / "in" / name / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            answers(path) if callable(answers) else make_submission(assignment, path, answers)
            submissions[name] = path
        runs[run] = sandboxed_autograde(course, assignment, submissions, jobs=jobs, timeout=TIMEOUT, budget=BUDGET)
    return runs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("forgery"))
    return lambda assignment: _graded(assignment, tmp)


CASES = [(a, name) for a, cases in CLASSES.items() for name in cases]


@pytest.mark.parametrize("assignment, name", CASES)
def test_each_forgery_gets_its_exact_score(graded, assignment, name):
    results = graded(assignment)["parallel"]
    _, expected = CLASSES[assignment][name]
    if isinstance(expected, str):  # as the same implementation without the trick
        expected = {t: r["score"] for t, r in results[expected]["tests"].items()}
    got = {t: r["score"] for t, r in results[name]["tests"].items()}
    assert got == expected, {t: results[name]["tests"][t]["messages"] for t in got if got[t] != expected[t]}


@pytest.mark.parametrize("assignment", sorted(CLASSES))
def test_the_parallel_run_equals_the_one_by_one_run(graded, assignment):
    runs = graded(assignment)
    scores_of = lambda results: {s: {t: r["score"] for t, r in res["tests"].items()} for s, res in results.items()}
    assert scores_of(runs["parallel"]) == scores_of(runs["one_by_one"])


def test_controls_lose_what_their_mistake_costs_and_no_more(graded):
    # The controls themselves: the wrong item's tests at 0, the rest full.
    for assignment, cases in CLASSES.items():
        for name, (_, expected) in cases.items():
            if name.startswith("control") or name == "honest":
                got = {t: r["score"] for t, r in graded(assignment)["parallel"][name]["tests"].items()}
                assert got == expected, (assignment, name)


@pytest.mark.parametrize("assignment, name", sorted(COURSE_MESSAGES))
def test_the_course_code_is_named_as_such(graded, assignment, name):
    result = graded(assignment)["parallel"][name]
    lost = [t for t, r in result["tests"].items() if r["score"] < r["max"]]
    assert lost and all(any(COURSE in m for m in result["tests"][t]["messages"]) for t in lost), result["tests"]


def test_inputs_changed_in_place_are_named(graded):
    # Each test that called it fails with the reason; the student's process
    # goes on (a failed test, not malformed data).
    result = graded("multi_head_attention")["parallel"]["changes_its_inputs_in_place"]
    for test in ("test_mha_visible", "test_mha_hidden"):
        (message,) = result["tests"][test]["messages"]
        assert "MultiHeadAttention modified the input in place" in message and "malformed" not in message, message


def test_the_course_module_is_not_in_the_sandbox(graded):
    result = graded("feed_forward")["parallel"]["imports_the_course_module"]
    assert "name 'PositionwiseFeedForward' is not defined" in result["tests"]["test_ffn_visible"]["messages"][0]


def test_a_copy_of_the_course_is_flagged_for_review(graded):
    flags = graded("feed_forward")["parallel"]["honest"]["flags"]
    assert any("the course's own implementation" in f for f in flags), flags
    partial = graded("feed_forward")["parallel"]["count_as_a_partial"]["flags"]
    assert not any("ffn_num_parameters" in f for f in partial), partial


ASSIGNMENTS = ["attention", "capstone", "causal_masking", "embedding_vs_encoder", "encoder_decoder", "feed_forward",
               "multi_head_attention", "pretrained", "transformer"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_sandbox_holds_no_course_code_for_a_graded_name(assignment):
    # The course files bound into the sandbox for an assignment define none of
    # the names it grades, so no import from `edgpt` can supply one.
    _, _, info = assignment_info(notebook_path(assignment, SOURCE_DIR).parents[2], assignment)
    _, files = course_files(info.course_modules)
    defined = {n for f in files for n in _top_level_names(f.read_text(encoding="utf-8"))}
    assert info.graded and not defined & info.graded, defined & info.graded
    if assignment == "transformer":
        assert {f.name for f in files} == {"__init__.py", "utils.py", "attention.py", "feed_forward.py"}
