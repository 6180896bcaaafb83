"""Near-identical answers are reported; independently written ones are not.

The fixture class of each assignment: the solution's answers, a copy of them
with every argument and local variable renamed, the code reformatted and
commented, and, as students of their own, the catalog's differently written
correct implementations (independent answers that are right too).
"""
import ast
import importlib
import subprocess
import sys

import pytest
from grading import answer_cells

from autograder.similarity import normalise, similar_pairs

ASSIGNMENTS = ["attention", "capstone", "causal_masking", "embedding_vs_encoder", "encoder_decoder", "feed_forward",
               "multi_head_attention", "pretrained", "transformer"]
THRESHOLD = 0.9  # the report's default


class _Rename(ast.NodeTransformer):
    """Every argument and local variable of every function gets another name."""

    def visit_FunctionDef(self, node):
        local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        for n in ast.walk(node):
            if isinstance(n, ast.arg) and n.arg in local:
                n.arg = f"my_{n.arg}"
            elif isinstance(n, ast.Name) and n.id in local:
                n.id = f"my_{n.id}"
        return node


def disguised(code):
    """`code` renamed, reformatted (one statement per line, other quotes and
    spacing) and commented: what a student copying an answer would hand in."""
    lines = ast.unparse(_Rename().visit(ast.parse(code))).splitlines()
    return "# my own work\n" + "\n\n".join(f"{line}  # step {i}" if line.strip() else line
                                           for i, line in enumerate(lines)) + "\n"


def fixture_class(assignment):
    solution = answer_cells(assignment, kinds=["code"])
    students = {"solution": solution, "copy": {cell: disguised(code) for cell, code in solution.items()}}
    catalog = importlib.import_module(f"test_{assignment}")
    for name, answers in catalog.CORRECT.items():
        students[f"own:{name}"] = answers
    return students


def test_disguising_changes_the_text_but_not_the_normalised_code():
    code = answer_cells("feed_forward")["ffn"]
    assert disguised(code) != code and "my_" in disguised(code)
    assert normalise(disguised(code)) == normalise(code)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_copy_is_reported_and_independent_answers_are_not(assignment):
    students = fixture_class(assignment)
    found = similar_pairs(students, THRESHOLD)
    copied = {(cell, "copy", "solution") for cell in answer_cells(assignment, kinds=["code"])}
    assert {(cell, a, b) for _, cell, a, b in found} == copied, [p for p in found if p[1:] not in copied]
    assert all(score == 1.0 for score, *_ in found)


def test_a_lower_threshold_reports_more_and_stubs_are_never_pairs():
    students = fixture_class("multi_head_attention")
    assert len(similar_pairs(students, 0.3)) > len(similar_pairs(students, THRESHOLD))
    stub = "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert similar_pairs({"a": {"c": stub}, "b": {"c": stub}}, THRESHOLD, skip=[stub]) == []
    assert similar_pairs({"a": {"c": stub}, "b": {"c": stub}}, THRESHOLD) == [(1.0, "c", "a", "b")]


def test_a_threshold_out_of_range_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "autograder", "report", "feed_forward", "--similarity", "2"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "python -m autograder report: error: --similarity takes a number above 0 and at most 1, not 2.0"]
