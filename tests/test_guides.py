"""The student and instructor guides, followed command by command.

Each ```bash block of a guide is run as written (with the course's venv first
on PATH, in a scratch folder) and the ```text block after it is the output it
must print: every line of it must appear in what the command printed. Between
the commands the tests do what the guide tells a person to do (write the
answers, download the submissions).
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from grading import answer_cells, make_submission, mutate, solution_lines

from autograder.course import released_notebook
from autograder.markdown import literal

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "feed_forward"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"

pytestmark = pytest.mark.slow


def _blocks(guide):
    """[(language, body)] of the fenced blocks of a guide, in order."""
    text = (REPO / "book" / guide).read_text(encoding="utf-8")
    return [(lang, body) for lang, body in re.findall(r"^```(\w+)\n(.*?)^```$", text, re.S | re.M)
            if lang in ("bash", "text")]


def _steps(guide):
    """[(command, [expected outputs])]: each bash block with the text blocks after it."""
    steps = []
    for lang, body in _blocks(guide):
        if lang == "bash":
            steps.append((body.strip(), []))
        else:
            assert steps, f"{guide}: an output block before any command"
            steps[-1][1].append(body)
    return steps


def _run(command, cwd, expected_rc=0):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == expected_rc, f"`{command}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _assert_prints(output, expected):
    squash = lambda s: " ".join(s.split())
    printed = [squash(line) for line in output.splitlines()]
    for line in filter(None, map(squash, expected.splitlines())):
        assert any(line in p for p in printed), f"expected a line with {line!r}, got:\n{output}"


def test_student_guide(tmp_path):
    steps = _steps("student_guide.md")
    assert [len(outputs) for _, outputs in steps] == [2], "one check command, shown before and after the work"
    ((validate, (before, after)),) = steps
    shutil.copytree(REPO / "exercises" / ASSIGNMENT, tmp_path / "exercises" / ASSIGNMENT)

    _assert_prints(_run(validate, tmp_path, expected_rc=1), before)
    # "Write both answers, save the notebook": the solution's answer cells.
    notebook = tmp_path / "exercises" / ASSIGNMENT / NOTEBOOK
    make_submission(ASSIGNMENT, notebook, answer_cells(ASSIGNMENT))
    _assert_prints(_run(validate, tmp_path, expected_rc=0), after)


GUIDE = "embedding_vs_encoder"  # the instructor guide's assignment: automatic points and a written answer
WRITTEN = "why_embedding_is_not_encoder"
ALICE_WRITES = ("An embedding is a lookup: with $E \\in \\mathbb{R}^{V \\times D}$ a token's vector is its row, "
                "whatever the other tokens are (2*3 weights for V=2, D=3). An encoder mixes positions. <b>really</b>")
COMMENT = "Right about the lookup; say what the encoder mixes across positions."


def _canvas_download(folder):
    """The zip of the guide's story, as Canvas names it: Alice correct and on
    time, Bob untouched, Carol's sin and cos swapped and late, Dave's file
    no longer a notebook."""
    solution = answer_cells(GUIDE)
    carol = dict(solution, sinusoidal_positional_encoding=mutate(solution["sinusoidal_positional_encoding"], [
        ("pe[:, 0::2] = torch.sin(angles)", "pe[:, 0::2] = torch.cos(angles)"),
        ("pe[:, 1::2] = torch.cos(angles)", "pe[:, 1::2] = torch.sin(angles)")]))
    entries = {"smithalice_1001_5001_embedding_vs_encoder.ipynb": (dict(solution, **{WRITTEN: ALICE_WRITES}),
                                                                     (2026, 11, 30, 20, 0, 0)),
               "jonesbob_1002_5002_embedding_vs_encoder.ipynb": ({}, (2026, 12, 1, 9, 0, 0)),
               "wucarol_late_1003_5003_embedding_vs_encoder.ipynb": (carol, (2026, 12, 1, 14, 30, 0))}
    with zipfile.ZipFile(folder / "submissions.zip", "w") as z:
        for entry, (answers, when) in entries.items():
            z.writestr(zipfile.ZipInfo(entry, when), make_submission(GUIDE, folder / "work" / entry, answers).read_bytes())
        z.writestr(zipfile.ZipInfo("kimdave_1004_5004_embedding_vs_encoder.ipynb", (2026, 12, 1, 11, 0, 0)),
                   '{"cells": [ I tidied this up in a text editor')


def _grade_by_hand(course):
    """What the guide's step 4 does in formgrader (tests/test_formgrader.py
    does it there, in a browser): a score and a comment on Alice's answer."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        (notebook,) = gb.find_submission(GUIDE, "smithalice").notebooks
        (grade,) = [g for g in notebook.grades if g.name == WRITTEN]
        (comment,) = [c for c in notebook.comments if c.name == WRITTEN]
        # as formgrader's API does when a score is entered
        grade.manual_score, grade.needs_manual_grade, comment.manual_comment = 1.5, False, COMMENT
        gb.db.commit()


def test_instructor_guide(tmp_path):
    steps = _steps("instructor_guide.md")
    verbs = [command.split()[3] for command, _ in steps]
    assert verbs == ["release", "collect", "grade", "feedback", "report", "export", "bundle"], verbs
    _canvas_download(tmp_path)
    course = tmp_path / "course"
    for command, outputs in steps:
        (expected,) = outputs
        _assert_prints(_run(command, tmp_path), expected)
        if " grade " in command:
            _grade_by_hand(course)

    results = json.loads((tmp_path / "grades.json").read_text())
    assert {s: r["total"] for s, r in results.items()} == {
        "jonesbob": 0.0, "kimdave": 0.0, "smithalice": 7.0, "wucarol": 3.0}
    # The written answer travels: in grades.json, in the notebook formgrader shows, in the feedback.
    assert results["smithalice"]["written"][WRITTEN] == {"max": 2.0, "text": ALICE_WRITES}
    assert not any("missing" in f for r in results.values() for f in r["flags"])
    shown = json.loads((course / "autograded/smithalice" / GUIDE / f"{GUIDE}.ipynb").read_text())
    assert ["".join(c["source"]) for c in shown["cells"]
            if c["metadata"].get("nbgrader", {}).get("grade_id") == WRITTEN] == [literal(ALICE_WRITES)]
    assert results["wucarol"]["late_seconds"] == 2.5 * 3600 and results["smithalice"]["late_seconds"] == 0
    page = (course / "feedback/smithalice" / GUIDE / f"{GUIDE}.html").read_text(encoding="utf-8")
    for shown_text in ("Automatic score: <strong>7 / 7</strong>", "graded by hand: <strong>1.5 / 2</strong>",
                       "Total: <strong>8.5 / 9</strong>", COMMENT, "2*3 weights", "&lt;b&gt;really&lt;/b&gt;"):
        assert shown_text in page, shown_text
    assert "<b>really</b>" not in page and "<math" in page
    assert "course&#39;s own implementation" not in page and "course's own implementation" not in page
    assert "not graded yet" in (course / "feedback/jonesbob" / GUIDE / f"{GUIDE}.html").read_text(encoding="utf-8")
    carol = (course / "feedback/wucarol" / GUIDE / f"{GUIDE}.html").read_text(encoding="utf-8")
    assert "sin and cos are swapped" in carol and "after the due date" in carol
    hidden = ("BEGIN HIDDEN TESTS", "os.urandom", "_mistake")
    assert not any(code in p for p in (page, carol) for code in hidden), "the feedback shows hidden test code"
    report = (course / "reports" / f"{GUIDE}.md").read_text(encoding="utf-8")
    assert "NotImplementedError" not in report.split("Mistakes")[1], "untouched items counted as mistakes"
    assert (course / "reports" / f"{GUIDE}.png").stat().st_size > 10_000  # the plot
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert {s: float(r["raw_score"]) for s, r in rows.items()} == {
        "jonesbob": 0.0, "kimdave": 0.0, "smithalice": 8.5, "wucarol": 3.0}
    alice, carol_row = rows["smithalice"], rows["wucarol"]
    assert (float(alice["auto_score"]), float(alice["manual_score"]), alice["comments"]) == (
        7.0, 1.5, f"{WRITTEN}: {COMMENT}")
    assert alice["needs_manual_grade"] == "False" and rows["jonesbob"]["needs_manual_grade"] == "True"
    assert (carol_row["duedate"], carol_row["timestamp"], float(carol_row["late_submission_penalty"])) == (
        "2026-12-01 12:00:00", "2026-12-01 14:30:00", 0.0)

    # Section 8's bundle: the notebook the course released, with its due date, and no answer.
    with zipfile.ZipFile(tmp_path / f"{GUIDE}.zip") as z:
        released = released_notebook(course, GUIDE).read_bytes()
        assert z.read(f"{GUIDE}/{GUIDE}.ipynb") == released
        assert not [line for line in solution_lines(GUIDE) if line in z.read(f"{GUIDE}/{GUIDE}.ipynb").decode()]

    # "Running grade again re-grades ...; what you entered by hand is kept."
    (grade,) = [command for command, _ in steps if " grade " in command]
    _run(grade, tmp_path)
    _run("python -m autograder export --csv again.csv", tmp_path)
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "grades.csv").read_text()

    # Late work: nbgrader's own penalty, set in the course's nbgrader_config.py.
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text().replace('penalty_method = "none"', 'penalty_method = "zero"'))
    _run("python -m autograder export --csv zero.csv", tmp_path)
    with open(tmp_path / "zero.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert {s: (float(r["late_submission_penalty"]), float(r["score"])) for s, r in rows.items()} == {
        "jonesbob": (0.0, 0.0), "kimdave": (0.0, 0.0), "smithalice": (0.0, 8.5), "wucarol": (3.0, 0.0)}
    _run(f"python -m autograder feedback {GUIDE}", tmp_path)
    carol = (course / "feedback/wucarol" / GUIDE / f"{GUIDE}.html").read_text(encoding="utf-8")
    assert "Late penalty: <strong>3</strong> points" in carol
