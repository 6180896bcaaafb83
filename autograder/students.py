"""A student's check of a notebook before handing it in (`validate`): the
visible tests of its release, run by the grader that assigns the marks
(`autograder.trusted`), so what a student sees is what is graded. Only the
sandbox is left out: it is the student's own code on the student's own
machine, which may have no bubblewrap."""
import json
from pathlib import Path

from autograder import RELEASE_DIR, REPO, UsageError, assignments
from autograder.exercise_translations import language_of


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
    # The Chinese release has the English one's cells: the language the
    # notebook records tells them apart.
    best, shared = None, (0, False)
    for assignment in assignments():
        for path in (REPO / RELEASE_DIR / assignment).glob("*.ipynb"):
            released = json.loads(path.read_text(encoding="utf-8"))
            theirs = {c["metadata"].get("nbgrader", {}).get("grade_id") for c in released["cells"]} - {None}
            fit = (len(ids & theirs), language_of(released) == language_of(nb))
            if fit[0] and fit > shared:
                best, shared = (assignment, released), fit
    if best is None:
        raise UsageError("this notebook holds none of the cells of the course's assignments: check the "
                         "notebook of exercises/<assignment>/ that you were given")
    return best


def validate(notebook: Path) -> list:
    """Run a student's notebook through the grader, visible tests only, and
    return one line per problem: a visible test that fails (with its
    message), and whatever the grader would flag (an edited locked cell, a
    missing answer cell). An empty list means every visible test passes."""
    from autograder.feedback import in_language
    from autograder.trusted import COPY_FLAG, grade_submission

    notebook = Path(notebook)
    assignment, released = release_of(_read(notebook))
    language = language_of(released)
    result = grade_submission(assignment, notebook, None, check=released)
    said = lambda m: in_language(m, language)  # noqa: E731
    problems = [SAID[language]["fails"].format(test=test, messages=" / ".join(map(said, r["messages"])))
                for test, r in result["tests"].items() if r["messages"]]
    # What the instructor is asked to review (an answer like the course's own
    # code) is not the student's problem to fix.
    return Problems([*[said(f) for f in result["flags"] if COPY_FLAG not in f], *problems], language)


# What `validate` tells a student, in the language of their release.
SAID = {"en": {"fails": "`{test}` fails: {messages}", "ok": "every visible test passes", "n": "{n} problem(s)"},
        "zh_CN": {"fails": "`{test}` 未通过：{messages}", "ok": "所有可见测试都通过了", "n": "{n} 个问题"}}


class Problems(list):
    """What `validate` found, one line each, and the language they are in."""

    def __init__(self, lines, language):
        super().__init__(lines)
        self.language = language

    def summary(self):
        words = SAID[self.language]
        return words["n"].format(n=len(self)) if self else words["ok"]
