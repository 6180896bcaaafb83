"""Helpers for the grading tests: build submissions from a catalog of
implementations and grade them all in one real `nbgrader autograde` run."""
import json
import re
from pathlib import Path

from autograder import RELEASE_DIR, REPO, SOURCE_DIR
from autograder.course import autograde, new_course

_SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*\n", re.MULTILINE)


def _source(cell):
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def notebook_path(assignment, folder):
    (path,) = (REPO / folder / assignment).glob("*.ipynb")
    return path


def answer_cells(assignment):
    """{grade_id: solution code} for every answer cell, markers removed."""
    nb = json.loads(notebook_path(assignment, SOURCE_DIR).read_text(encoding="utf-8"))
    return {
        c["metadata"]["nbgrader"]["grade_id"]: _SOLUTION_MARKERS.sub("", _source(c))
        for c in nb["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("solution")
    }


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


def grade_catalog(assignment, tmp_path, catalog):
    """Grade `{student: {grade_id: code}}` (each on top of the full solution),
    plus the solution itself ("solution") and the untouched release ("untouched")."""
    solution = answer_cells(assignment)
    name = notebook_path(assignment, SOURCE_DIR).name
    submissions = {
        "solution": make_submission(assignment, tmp_path / "in" / "solution" / name, solution),
        "untouched": make_submission(assignment, tmp_path / "in" / "untouched" / name, {}),
    }
    for student, replaced in catalog.items():
        submissions[student] = make_submission(
            assignment, tmp_path / "in" / student / name, {**solution, **replaced})
    course = new_course(tmp_path / "course", assignment)
    return autograde(course, assignment, submissions)
