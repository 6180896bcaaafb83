"""A student's check of a notebook before handing it in (`validate`): the
visible tests of its release, run by the grader that assigns the marks
(`autograder.trusted`), so what a student sees is what is graded. Only the
sandbox is left out: it is the student's own code on the student's own
machine, which may have no bubblewrap."""
import json
from pathlib import Path

from autograder import RELEASE_DIR, REPO, UsageError, assignments


def _read(notebook: Path) -> dict:
    if not notebook.is_file():
        raise UsageError(f"{notebook}: no such file (give the path of your .ipynb)")
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        assert isinstance(nb.get("cells"), list)
        return nb
    except (ValueError, AssertionError, AttributeError, UnicodeDecodeError):
        raise UsageError(f"{notebook} is not a notebook (a .ipynb file as Jupyter saves it); "
                         f"if you edited it by hand, download the assignment again") from None


def release_of(nb: dict):
    """(assignment, released notebook as data) whose cells `nb` carries."""
    ids = {(c.get("metadata") or {}).get("nbgrader", {}).get("grade_id") for c in nb["cells"]
           if isinstance(c, dict)} - {None}
    best, shared = None, 0
    for assignment in assignments():
        for path in (REPO / RELEASE_DIR / assignment).glob("*.ipynb"):
            released = json.loads(path.read_text(encoding="utf-8"))
            theirs = {c["metadata"].get("nbgrader", {}).get("grade_id") for c in released["cells"]} - {None}
            if len(ids & theirs) > shared:
                best, shared = (assignment, released), len(ids & theirs)
    if best is None:
        raise UsageError("this notebook holds none of the cells of the course's assignments: check the "
                         "notebook of exercises/<assignment>/ that you were given")
    return best


def validate(notebook: Path) -> list:
    """Run a student's notebook through the grader, visible tests only, and
    return one line per problem: a visible test that fails (with its
    message), and whatever the grader would flag (an edited locked cell, a
    missing answer cell). An empty list means every visible test passes."""
    from autograder.trusted import COPY_FLAG, grade_submission

    notebook = Path(notebook)
    assignment, released = release_of(_read(notebook))
    result = grade_submission(assignment, notebook, None, check=released)
    problems = [f"`{test}` fails: {' / '.join(r['messages'])}" for test, r in result["tests"].items()
                if r["messages"]]
    # What the instructor is asked to review (an answer like the course's own
    # code) is not the student's problem to fix.
    return [*[f for f in result["flags"] if COPY_FLAG not in f], *problems]
