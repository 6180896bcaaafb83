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
from grading import answer_cells, make_submission, mutate

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


def _download_from_the_platform(folder):
    """The zip of the guide's story: Alice correct, Bob untouched, Carol's
    parameter count without biases, plus a stray file."""
    solution = answer_cells(ASSIGNMENT)
    carol = dict(solution, ffn_num_parameters=mutate(solution["ffn_num_parameters"], [
        ("(d_model * d_ff + d_ff) + (d_ff * d_model + d_model)", "2 * d_model * d_ff")]))
    notebooks = {"alice/feed_forward.ipynb": solution, "bob_1234_feed_forward.ipynb": {},
                 "carol/feed_forward.ipynb": carol}
    with zipfile.ZipFile(folder / "submissions.zip", "w") as z:
        for entry, answers in notebooks.items():
            z.write(make_submission(ASSIGNMENT, folder / "work" / entry, answers), entry)
        z.writestr("carol/README.txt", "my notes")


def test_instructor_guide(tmp_path):
    steps = _steps("instructor_guide.md")
    verbs = [command.split()[3] for command, _ in steps]
    assert verbs == ["release", "collect", "grade", "feedback", "report", "export"], verbs
    _download_from_the_platform(tmp_path)
    for command, outputs in steps:
        (expected,) = outputs
        _assert_prints(_run(command, tmp_path), expected)

    course = tmp_path / "course"
    results = json.loads((tmp_path / "grades.json").read_text())
    assert {s: r["total"] for s, r in results.items()} == {"alice": 7.0, "bob": 0.0, "carol": 4.0}
    page = (course / "feedback/carol" / ASSIGNMENT / "feed_forward.html").read_text(encoding="utf-8")
    assert "the biases are not counted" in page
    hidden = ("_count_mistake", "BEGIN HIDDEN TESTS", "os.urandom")
    assert not any(code in page for code in hidden), "the feedback shows hidden test code"
    report = (course / "reports" / "feed_forward.md").read_text(encoding="utf-8")
    assert "| `test_ffn_num_parameters_hidden` | the biases are not counted | 1 |" in report
    assert (course / "reports" / "feed_forward.png").stat().st_size > 10_000  # the plot
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    assert rows == {"alice": 7.0, "bob": 0.0, "carol": 4.0}

    # "Running grade again re-grades and replaces the earlier scores."
    (grade,) = [command for command, _ in steps if " grade " in command]
    _run(grade, tmp_path)
    _run("python -m autograder export --csv again.csv", tmp_path)
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "grades.csv").read_text()
