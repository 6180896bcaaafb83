"""Helpers for the grading tests: build submissions from a catalog of
implementations and grade them all as an instructor does, with the sandboxed
grader (`python -m autograder grade`), two at a time."""
import json
import re

from autograder import RELEASE_DIR, REPO, SOURCE_DIR
from autograder.course import open_course
from autograder.exercise_translations import TEXT_STUB, chinese, english
from autograder.grading import autograde, sandboxed_autograde

_CJK = re.compile(r"[\u4e00-\u9fff]")
_SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*(\n|\Z)", re.MULTILINE)


def text_stub(assignment):
    """What nbgrader leaves in a released written-answer cell of `assignment`."""
    return TEXT_STUB if english(assignment) else "YOUR ANSWER HERE"


def _source(cell):
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def notebook_path(assignment, folder):
    (path,) = (REPO / folder / assignment).glob("*.ipynb")
    return path


def answer_cells(assignment, kinds=("code", "markdown")):
    """{grade_id: solution text} for every answer cell (of the cell types in
    `kinds`), markers removed."""
    nb = json.loads(notebook_path(assignment, SOURCE_DIR).read_text(encoding="utf-8"))
    return {
        c["metadata"]["nbgrader"]["grade_id"]: _SOLUTION_MARKERS.sub("", _source(c))
        for c in nb["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("solution") and c["cell_type"] in kinds
    }


_BLOCK = re.compile(r"^[ \t]*### BEGIN (SOLUTION|HIDDEN TESTS)[ \t]*\n(.*?)^[ \t]*### END \1", re.S | re.M)


def solution_lines(assignment, shortest=12, blocks=("SOLUTION", "HIDDEN TESTS")):
    """Every line only the instructor's notebook has: inside its `### BEGIN
    SOLUTION` and `### BEGIN HIDDEN TESTS` blocks (or only those of `blocks`)
    and nowhere else in it, stripped, without comments and the lines shorter
    than `shortest` (a bare `return x` or `)` is in any code)."""
    nb = json.loads(notebook_path(assignment, SOURCE_DIR).read_text(encoding="utf-8"))
    lines, public = set(), set()
    for cell in nb["cells"]:
        for kind, block in _BLOCK.findall(_source(cell)):
            if kind in blocks:
                lines |= {line.strip() for line in block.splitlines()
                          if len(line.strip()) >= shortest and not line.strip().startswith("#")}
        public |= {line.strip() for line in _BLOCK.sub("", _source(cell)).splitlines()}
    return lines - public  # a line the released notebook has anyway (a visible test's) is no answer


def solution_namespace(assignment, **extra):
    """The names the solution's code answer cells define, run on top of the
    imports every assignment notebook has (and `extra`), for tests that check
    the book's modules against the graded solution."""
    import math

    import torch
    import torch.nn.functional as F
    from torch import nn

    namespace = {"math": math, "torch": torch, "F": F, "nn": nn, **extra}
    nb = json.loads(notebook_path(assignment, SOURCE_DIR).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            exec(_SOLUTION_MARKERS.sub("", _source(cell)), namespace)
    return namespace


def book_answers(assignment):
    """{grade_id: code} with every code answer cell set to the source of the
    graded name it defines as the package `edgpt` has it (its own docstrings
    and decorators): the code the book runs, handed in as an answer."""
    import ast
    import inspect

    from autograder.graded_code import answer_definitions, _edgpt_module, _params

    names = {node.name: node for a, node, _ in answer_definitions() if a == assignment}
    answers = {}
    for grade_id, code in answer_cells(assignment, kinds=("code",)).items():
        (name,) = [n.name for n in ast.parse(code).body if getattr(n, "name", "_")[0] != "_"
                   and isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        node = names[name]
        module = _edgpt_module(name, None if isinstance(node, ast.ClassDef) else _params(node))
        answers[grade_id] = inspect.getsource(getattr(module, name))
    return answers


def item_of(assignment):
    """{test cell: the answer cell it tests}, as the grader reads it."""
    from autograder.trusted import Assignment

    notebooks = [json.loads(notebook_path(assignment, d).read_text(encoding="utf-8")) for d in (SOURCE_DIR, RELEASE_DIR)]
    return Assignment(*notebooks).item_of


def mutate(code, edits):
    """`code` with each (old, new) of `edits` applied; each `old` must occur once,
    so a catalog entry fails loudly when the solution it edits changes."""
    for old, new in edits:
        assert code.count(old) == 1, f"{old!r} occurs {code.count(old)} times in:\n{code}"
        code = code.replace(old, new)
    return code


def make_submission(assignment, out_path, answers):
    """The released notebook with its answer cells set to `answers` ({grade_id: code});
    cells not named keep the released stub."""
    nb = json.loads(notebook_path(assignment, RELEASE_DIR).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return out_path


def catalog_submissions(assignment, folder, catalog):
    """Notebooks for `{student: {grade_id: code}}` (each on top of the full solution),
    plus the solution itself ("solution") and the untouched release ("untouched")."""
    solution = answer_cells(assignment)
    name = notebook_path(assignment, SOURCE_DIR).name
    submissions = {
        "solution": make_submission(assignment, folder / "solution" / name, solution),
        "untouched": make_submission(assignment, folder / "untouched" / name, {}),
    }
    for student, replaced in catalog.items():
        submissions[student] = make_submission(assignment, folder / student / name, {**solution, **replaced})
    return submissions


def grade_catalog(assignment, tmp_path, catalog, engine="sandbox"):
    """Grade the catalog's submissions in a fresh course, with the sandboxed
    grader (two at a time) or with plain `nbgrader autograde`."""
    submissions = catalog_submissions(assignment, tmp_path / "in", catalog)
    course = open_course(tmp_path / f"course-{engine}", assignment)
    if engine == "nbgrader":
        return autograde(course, assignment, submissions)
    return sandboxed_autograde(course, assignment, submissions, jobs=2)


def catalog_tests(assignment, max_points, wrong, correct, items, time_limit=90, written=(),
                  compare_with_nbgrader=False):
    """The grading tests every assignment shares, for a test module to adopt with
    `globals().update(catalog_tests(...))`.

    `wrong`: name -> (answer cell, [(solution text, replaced by)], test cell that
    must score 0, words its failure message must contain). `correct`: name ->
    {answer cell: code}, each must get full marks. `items`: the graded answer
    cells, each needing at least three cataloged mistakes. `written`: the answer
    cells graded by hand (markdown), released empty, with a rubric in the solution.
    """
    import pytest

    # The book's own code (edgpt's graded names) is a correct answer too.
    correct = {**correct, "book_code_from_edgpt": book_answers(assignment)}

    def the_catalog(release=assignment):
        solution = answer_cells(release)
        catalog = {name: {cell: mutate(solution[cell], edits)}
                   for name, (cell, edits, _, _) in wrong.items()}
        catalog.update(correct)
        return catalog

    @pytest.fixture(scope="module")
    def graded(tmp_path_factory):
        return grade_catalog(assignment, tmp_path_factory.mktemp(assignment), the_catalog())

    @pytest.fixture(scope="module")
    def graded_in_chinese(tmp_path_factory):
        release = chinese(assignment)
        return grade_catalog(release, tmp_path_factory.mktemp(release), the_catalog(release))

    @pytest.mark.slow
    def test_chinese_release_grades_every_submission_alike(graded, graded_in_chinese):
        # The same tests in another language: every test cell of every
        # submission scores the same, and a mistake is explained in Chinese.
        # (Of a wrong implementation's own item, the test cell that must fail;
        # its other test cells may be passed by luck, in either language:
        # `generator_ignored` sometimes draws the same tokens twice.)
        item = item_of(assignment)
        kept = lambda s, t: s not in wrong or item[t] != wrong[s][0] or t == wrong[s][2]  # noqa: E731
        scores = lambda results: {s: {t: r["score"] for t, r in v["tests"].items() if kept(s, t)}  # noqa: E731
                                  for s, v in results.items()}
        in_english, in_chinese = scores(graded), scores(graded_in_chinese)
        differ = {s: (in_english[s], in_chinese.get(s)) for s in in_english if in_english[s] != in_chinese.get(s)}
        assert not differ and set(in_chinese) == set(in_english), differ
        for name, (_, _, test_cell, _) in wrong.items():
            messages = graded_in_chinese[name]["tests"][test_cell]["messages"]
            assert any(_CJK.search(m) for m in messages), f"{name}: {test_cell} said {messages}"

    @pytest.mark.slow
    def test_sandbox_agrees_with_plain_nbgrader(graded, tmp_path):
        # The sandbox runs the test cells in the grader against stand-ins for
        # the student's names; plain nbgrader runs everything in one kernel.
        # For honest submissions the two must agree on every test cell.
        # For a wrong implementation, on its own item's tests: plain nbgrader
        # also lets it cost the items that use it, which the sandbox does not.
        # Plain nbgrader is slow (a kernel per submission, one at a time): it
        # grades every correct submission and each item's first wrong one.
        own = {name: cell for name, (cell, _, _, _) in wrong.items()}
        first_wrong = {min(n for n in own if own[n] == cell) for cell in set(own.values())}
        catalog = {name: cells for name, cells in the_catalog().items() if name not in own or name in first_wrong}
        plain = grade_catalog(assignment, tmp_path, catalog, engine="nbgrader")
        counted = lambda s, t: s not in own or item_of(assignment)[t] == own[s]
        scores = lambda results: {s: {t: r["tests"][t]["score"] for t in r["tests"] if counted(s, t)}
                                  for s, r in results.items() if s in plain}
        assert set(plain) == set(catalog) | {"solution", "untouched"}
        assert scores(plain) == scores(graded)

    @pytest.mark.slow
    def test_solution_gets_full_marks(graded):
        result = graded["solution"]
        assert result["max"] == max_points
        assert result["total"] == max_points, result["tests"]

    @pytest.mark.slow
    def test_solution_notebook_runs_within_its_time_limit(graded):
        # The whole autograde of the solution: kernel start, every cell, every test.
        assert graded["solution"]["seconds"] < time_limit

    @pytest.mark.slow
    def test_untouched_exercise_gets_zero(graded):
        result = graded["untouched"]
        assert result["max"] == max_points
        assert result["total"] == 0.0, result["tests"]

    @pytest.mark.slow
    @pytest.mark.parametrize("name", sorted(wrong))
    def test_wrong_implementation_loses_points_with_a_message(graded, name):
        cell, _, test_cell, words = wrong[name]
        result = graded[name]
        test = result["tests"][test_cell]
        assert result["total"] < max_points
        assert test["score"] == 0.0, f"{test_cell} should fail for {name}: {test}"
        assert any(words in m for m in test["messages"]), (
            f"{test_cell} should say '{words}' for {name}, said {test['messages']}")
        # One mistake costs one item: every test that lost points tests `cell`.
        lost = {t for t, r in result["tests"].items() if r["score"] < r["max"]}
        others = {t for t in lost if item_of(assignment)[t] != cell}
        assert not others, f"{name} (a mistake in {cell}) also lost points in {sorted(others)}"

    @pytest.mark.slow
    @pytest.mark.parametrize("name", sorted(correct))
    def test_differently_written_correct_implementation_gets_full_marks(graded, name):
        result = graded[name]
        assert result["total"] == max_points, {
            k: t for k, t in result["tests"].items() if t["score"] < t["max"]}

    def test_catalog_covers_every_graded_item():
        assert len(correct) >= 2
        for cell in items:
            assert sum(c == cell for c, _, _, _ in wrong.values()) >= 3, cell
        assert set(items) | set(written) == set(answer_cells(assignment)), (
            "every answer cell is a graded item or a written answer")

    @pytest.mark.slow
    def test_written_answers_are_left_to_the_instructor(graded):
        # Each written answer travels as the student wrote it (for formgrader
        # and the feedback page), is never flagged as missing, and is not
        # part of the automatic score.
        solution = answer_cells(assignment, kinds=["markdown"])
        for student, text in (("solution", lambda g: solution[g]), ("untouched", lambda g: text_stub(assignment))):
            assert set(graded[student]["written"]) == set(written)
            for grade_id in written:
                assert graded[student]["written"][grade_id]["text"].strip() == text(grade_id).strip()
            assert not [f for f in graded[student]["flags"] if "missing" in f], graded[student]["flags"]

    def test_written_answers_are_released_empty_with_a_rubric_in_the_solution():
        released = json.loads(notebook_path(assignment, RELEASE_DIR).read_text(encoding="utf-8"))
        for grade_id in written:
            (cell,) = [c for c in released["cells"]
                       if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
            meta = cell["metadata"]["nbgrader"]
            assert cell["cell_type"] == "markdown" and meta["grade"] and meta["solution"]
            assert _source(cell).strip() == text_stub(assignment)
            assert "Rubric" in answer_cells(assignment)[grade_id]

    tests = {f.__name__: f for f in (
        graded, graded_in_chinese, test_chinese_release_grades_every_submission_alike, test_solution_gets_full_marks, test_solution_notebook_runs_within_its_time_limit,
        test_untouched_exercise_gets_zero, test_wrong_implementation_loses_points_with_a_message,
        test_differently_written_correct_implementation_gets_full_marks,
        test_catalog_covers_every_graded_item, test_written_answers_are_left_to_the_instructor,
        test_written_answers_are_released_empty_with_a_rubric_in_the_solution)}
    if compare_with_nbgrader:
        tests[test_sandbox_agrees_with_plain_nbgrader.__name__] = test_sandbox_agrees_with_plain_nbgrader
    return tests
