"""The grader runs wherever the course and its virtual environment live, or
refuses to start with the reason: an editable install from a copy of the
repository, into a virtual environment outside it, grading a course folder
elsewhere; and a plain (non-editable) install, which has no solutions/."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from grading import answer_cells, make_submission

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "feed_forward"
COPIED = shutil.ignore_patterns(".venv", ".git", "_build", "node_modules", "course", "*.egg-info", "__pycache__")

pytestmark = pytest.mark.slow


@pytest.fixture
def place():
    # Outside /tmp and the home folder, where an instructor's files usually are
    # (the sandbox hides both).
    folder = Path(tempfile.mkdtemp(prefix="edgpt-install-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _venv(place, editable):
    """A venv of its own (no pip, no packages) that sees this venv's
    dependencies through a .pth file, with the course installed into it from
    a copy of the repository."""
    clone, venv = place / "clone", place / "venv"
    shutil.copytree(REPO, clone, ignore=COPIED)
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "course-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           *(["-e"] if editable else []), str(clone)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return python, clone


def _cli(python, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run([str(python), "-m", "autograder", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_an_editable_install_outside_the_repository_grades_a_course_elsewhere(place):
    python, clone = _venv(place, editable=True)
    where = subprocess.run([python, "-c", "import autograder, edgpt; print(autograder.__file__, edgpt.__file__)"],
                           capture_output=True, text=True, cwd=place, check=True).stdout.split()
    assert all(Path(w).is_relative_to(clone) for w in where), where  # the copy's code, not this checkout's
    course = place / "elsewhere" / "course"
    for student, answers in (("alice", answer_cells(ASSIGNMENT)), ("bob", {})):
        make_submission(ASSIGNMENT, place / "in" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", answers)
    done = _cli(python, "release", ASSIGNMENT, "--course", str(course), cwd=place)
    assert done.returncode == 0, done.stderr
    done = _cli(python, "grade", ASSIGNMENT, "--course", str(course), "--submitted", str(place / "in"),
                "--jobs", "1", cwd=place)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line.split()[1:4] for line in done.stdout.splitlines() if line[:1].isalpha()}
    assert lines == {"alice": ["7.0", "/", "7.0"], "bob": ["0.0", "/", "7.0"]}, done.stdout


def test_an_install_without_the_course_refuses_with_the_reason(place):
    python, _ = _venv(place, editable=False)
    done = _cli(python, "release", ASSIGNMENT, "--course", str(place / "course"), cwd=place)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "install it from the course's repository with `pip install -e <repository>`" in done.stderr
    assert not (place / "course").exists()
