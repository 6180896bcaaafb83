"""The command line's answers to bad input: one line on stderr that names the
problem and the fix, exit status 2, and nothing created or changed."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PY = [sys.executable, "-m", "autograder"]


def _run(args, cwd):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    return subprocess.run([*PY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _tree(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder with a course (released, nothing collected) and a few files."""
    folder = tmp_path_factory.mktemp("cli")
    done = _run(["release", "feed_forward", "--course", "course"], folder)
    assert done.returncode == 0, done.stderr
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "broken.ipynb").write_text('{"cells": [ oops')
    (folder / "empty" / "alice").mkdir(parents=True)
    return folder


BAD = {  # arguments -> words the one line must contain
    "mistyped course": (["grade", "feed_forward", "--course", "coruse"],
                        "coruse is not a course folder (no such folder): check --course"),
    "mistyped assignment": (["collect", "feed_fwd", "x.zip"], "unknown assignment 'feed_fwd': did you mean feed_forward?"),
    "missing zip": (["collect", "feed_forward", "missing.zip"], "no such file or folder: missing.zip"),
    "not a zip": (["collect", "feed_forward", "notes.txt"], "notes.txt is not a zip file or a folder"),
    "bad pattern": (["collect", "feed_forward", ".", "--pattern", "(?P<who>x)"], "has no group named 'student'"),
    "due date": (["release", "feed_forward", "--course", "course", "--due", "next friday"],
                 "--due 'next friday' is not a date: write it as 2026-12-10T23:59"),
    "due without course": (["release", "feed_forward", "--due", "2026-12-10T23:59"], "--due needs --course"),
    "nothing collected": (["grade", "feed_forward"], "no submissions of feed_forward in course/submitted: run collect"),
    "missing --submitted": (["grade", "feed_forward", "--submitted", "nowhere"], "--submitted nowhere: no such folder"),
    "empty --submitted": (["grade", "feed_forward", "--submitted", "empty"],
                          "--submitted empty: no notebook in it laid out as empty/<student_id>/feed_forward/"),
    "jobs": (["grade", "feed_forward", "--jobs", "0"], "--jobs takes a whole number of at least 1"),
    "nothing graded": (["feedback", "feed_forward"], "nothing graded yet for feed_forward in course: run grade first"),
    "report elsewhere": (["report", "feed_forward", "--course", "nowhere"], "nowhere is not a course folder"),
    "export elsewhere": (["export", "--course", "nowhere"], "nowhere is not a course folder"),
    "export into no folder": (["export", "--csv", "no/such/grades.csv"], "--csv no/such/grades.csv: its folder does not exist"),
    "validate a text file": (["validate", "notes.txt"], "notes.txt is not a notebook"),
    "validate a broken notebook": (["validate", "broken.ipynb"], "broken.ipynb is not a notebook"),
    "validate nothing": (["validate", "gone.ipynb"], "gone.ipynb: no such file"),
    "no assignment": (["grade"], "the following arguments are required: assignment (see python -m autograder grade"),
    "unknown engine": (["grade", "feed_forward", "--engine", "docker"], "invalid choice: 'docker'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_changes_nothing(place, case):
    args, words = BAD[case]
    before = _tree(place)
    done = _run(args, place)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert words in lines[0], lines[0]
    assert lines[0].startswith(f"python -m autograder {args[0]}: error: ")
    assert _tree(place) == before, "a command answered with an error changed files"


def test_the_course_folder_is_a_working_nbgrader_course(place):
    # nbgrader's own command, started in the course folder, finds the course
    # (its config, its gradebook, the released assignment) with no flag.
    done = subprocess.run([str(Path(sys.executable).with_name("nbgrader")), "db", "assignment", "list"],
                          cwd=place / "course", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "No nbgrader_config.py file found" not in done.stderr
    assert "feed_forward" in done.stdout, done.stdout


def test_nbgrader_parts_without_a_use_are_off_in_jupyterlab():
    # `make` runs `python -m autograder jupyter-setup`: no Assignment List,
    # Course List or Validate button leading nowhere; formgrader stays.
    from autograder.__main__ import JUPYTER_OFF

    jupyter = str(Path(sys.executable).with_name("jupyter"))
    lab = subprocess.run([jupyter, "labextension", "list"], capture_output=True, text=True, timeout=120)
    disabled = (lab.stdout + lab.stderr).split("Disabled extensions:")[-1]
    assert all(name in disabled for name in JUPYTER_OFF["lab"]), lab.stdout + lab.stderr
    server = subprocess.run([jupyter, "server", "extension", "list"], capture_output=True, text=True, timeout=120)
    states = {line.split()[0]: line.split()[1] for line in (server.stdout + server.stderr).splitlines()
              if line.strip().startswith("nbgrader.server_extensions.") and len(line.split()) > 1
              and line.split()[1] in ("\x1b[32menabled\x1b[0m", "\x1b[31mdisabled\x1b[0m", "enabled", "disabled")}
    states = {k: "enabled" if "enabled" in v else "disabled" for k, v in states.items()}
    assert states == {**{name: "disabled" for name in JUPYTER_OFF["server"]},
                      "nbgrader.server_extensions.formgrader": "enabled"}, states


@pytest.mark.slow
def test_grade_takes_a_due_date_and_flags_late_work(tmp_path):
    import json
    import shutil

    assert _run(["release", "feed_forward", "--course", "course"], tmp_path).returncode == 0
    handed_in = tmp_path / "course/submitted/bob/feed_forward"
    handed_in.mkdir(parents=True)
    shutil.copy(REPO / "exercises/feed_forward/feed_forward.ipynb", handed_in)
    (handed_in / "timestamp.txt").write_text("2026-12-01 13:15:00.000000 UTC\n")
    done = _run(["grade", "feed_forward", "--due", "2026-12-01T13:00+01:00", "--jobs", "1", "--json", "g.json"],
                tmp_path)
    assert done.returncode == 0, done.stderr
    bob = json.loads((tmp_path / "g.json").read_text())["bob"]
    assert (bob["duedate"], bob["timestamp"], bob["late_seconds"]) == (
        "2026-12-01T12:00:00+00:00", "2026-12-01T13:15:00+00:00", 4500.0)
    assert "flagged: handed in 1 h 15 min after the due date" in done.stdout


@pytest.mark.slow
def test_validate_needs_no_sandbox(tmp_path):
    # A student's laptop may have no bubblewrap: validate runs the same grader
    # with the student's process as a plain local one.
    notebook = tmp_path / "feed_forward.ipynb"
    notebook.write_bytes((REPO / "exercises/feed_forward/feed_forward.ipynb").read_bytes())
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no /usr/bin: no bwrap
    done = subprocess.run([*PY, "validate", str(notebook)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stdout.count("fails: NotImplementedError: not implemented yet") == 2, done.stdout
