"""A course folder: an nbgrader course that the instructor's commands keep.

`root` holds `nbgrader_config.py` (so nbgrader's own commands and formgrader
work there), `solutions/` (copied from this repository), `exercises/` (its
release), `submitted/`, `autograded/`, `feedback/`, `reports/` and
`gradebook.db`. The steps of the cycle live in their own modules:
`autograder.collect`, `autograder.grading`, `autograder.results`,
`autograder.feedback`, `autograder.report`; this one creates and finds
courses and talks to nbgrader.
"""
import contextlib
import datetime as dt
import difflib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from autograder import RELEASE_DIR, REPO, SOURCE_DIR, UsageError, assignments
from autograder.config import CONFIG_FILE, nbgrader_config, write_config


def _alembic_on_path():
    """nbgrader's Gradebook runs the `alembic` command by name: make sure one
    is found even when the venv is not activated (the one beside this
    interpreter), or when the package came from elsewhere (a `.pth` file, a
    system site): then a two-line script that runs this interpreter's
    `python -m alembic`."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ["PATH"]
    if shutil.which("alembic") is None:
        import atexit

        shim = Path(tempfile.mkdtemp(prefix="edgpt-alembic-"))
        atexit.register(shutil.rmtree, shim, ignore_errors=True)
        (shim / "alembic").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m alembic "$@"\n')
        (shim / "alembic").chmod(0o755)
        os.environ["PATH"] = str(shim) + os.pathsep + os.environ["PATH"]


def _api(root: Path, assignment: str = None):
    """nbgrader's API on the course at `root`; releasing `assignment`, its
    answer cells get the stubs of its language."""
    _alembic_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from autograder import exercise_translations

    config = nbgrader_config(root)
    if assignment and exercise_translations.english(assignment):
        config.ClearSolutions.code_stub = {"python": exercise_translations.CODE_STUB}
        config.ClearSolutions.text_stub = exercise_translations.TEXT_STUB
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _check(result, what):
    if not result["success"]:
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('error') or result.get('log')}")


def check_assignment(assignment: str) -> str:
    """`assignment` if the course has it, else a UsageError naming the closest."""
    known = assignments()
    if assignment not in known:
        close = difflib.get_close_matches(assignment, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"the assignments are {', '.join(known)}"
        raise UsageError(f"unknown assignment {assignment!r}: {hint}")
    return assignment


def existing_course(root: Path) -> Path:
    """`root` if it is a course folder; never creates one (a mistyped
    `--course` must not start a second, empty course)."""
    root = Path(root)
    if not (root / CONFIG_FILE).is_file():
        what = "no such folder" if not root.exists() else f"no {CONFIG_FILE} there"
        raise UsageError(f"{root} is not a course folder ({what}): check --course, or start a course with "
                         f"`python -m autograder release <assignment> --course {root}`")
    return root


def open_course(root: Path, assignment: str, due: dt.datetime = None) -> Path:
    """A course folder at `root` holding this repository's source of `assignment`,
    released and registered in its gradebook (created if missing), with its
    due date when `due` is given.

    Idempotent: an existing course keeps its gradebook, submissions, grades
    and due dates; the assignment is generated again only when its source
    changed.
    """
    root = Path(root)
    check_assignment(assignment)
    source, ours = root / SOURCE_DIR / assignment, REPO / SOURCE_DIR / assignment
    root.mkdir(parents=True, exist_ok=True)
    write_config(root)
    if not (source.is_dir() and _same_tree(source, ours) and (root / RELEASE_DIR / assignment).is_dir()):
        if source.exists():
            shutil.rmtree(source)
        shutil.copytree(ours, source)
        _check(_api(root, assignment).generate_assignment(assignment), f"generate_assignment {assignment}")
    if due is not None:
        with gradebook(root) as gb:
            gb.update_or_create_assignment(assignment, duedate=due.astimezone(dt.timezone.utc).replace(tzinfo=None))
    return root


def _same_tree(a: Path, b: Path) -> bool:
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return files(a) == files(b)


def release(assignment: str, dest: Path = None) -> Path:
    """Regenerate the student version of `assignment` from its solution notebook.

    Writes `exercises/<assignment>/` (or `dest`), replacing what was there. It is
    generated in a scratch course so the repository never gets a gradebook.
    """
    dest = Path(dest) if dest else REPO / RELEASE_DIR / assignment
    with tempfile.TemporaryDirectory() as tmp:
        course = open_course(Path(tmp), assignment)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(course / RELEASE_DIR / assignment, dest)
    return dest


def parse_due(text: str) -> dt.datetime:
    """A due date as given on the command line (ISO 8601; UTC unless it says
    otherwise), as an aware datetime."""
    try:
        due = dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise UsageError(f"--due {text!r} is not a date: write it as 2026-12-10T23:59 (UTC) "
                         f"or 2026-12-10T23:59+01:00") from None
    return due if due.tzinfo else due.replace(tzinfo=dt.timezone.utc)


def due_date(root: Path, assignment: str):
    """The assignment's due date in the course (aware, UTC), or None."""
    with gradebook(root) as gb:
        due = gb.find_assignment(assignment).duedate
    return None if due is None else due.replace(tzinfo=dt.timezone.utc)


@contextlib.contextmanager
def gradebook(root: Path):
    """nbgrader's gradebook of the course at `root`."""
    from nbgrader.api import Gradebook

    _alembic_on_path()
    with warnings.catch_warnings(), Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        # nbgrader's own gradebook code warns about its SQLAlchemy sessions.
        warnings.filterwarnings("ignore", message=".*not in session.*")
        yield gb


def released_notebook(root: Path, assignment: str) -> Path:
    (nb,) = (Path(root) / RELEASE_DIR / assignment).glob("*.ipynb")
    return nb


def submitted_notebooks(root: Path, assignment: str) -> dict:
    """{student: notebook} for every submission of `assignment` in the course."""
    return {p.parent.parent.name: p
            for p in sorted((Path(root) / "submitted").glob(f"*/{assignment}/*.ipynb"))}


def submission_time(notebook: Path):
    """When the student handed `notebook` in (nbgrader's `timestamp.txt` beside
    it, written by `collect`), aware UTC, or None."""
    from nbgrader.utils import parse_utc

    stamp = Path(notebook).parent / "timestamp.txt"
    if not stamp.is_file():
        return None
    return parse_utc(stamp.read_text(encoding="utf-8").strip()).replace(tzinfo=dt.timezone.utc)
