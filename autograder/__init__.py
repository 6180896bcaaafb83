"""Grading for the course: nbgrader configuration, release and autograding.

The repository itself is the nbgrader course directory: `solutions/` is
nbgrader's source folder (instructor notebooks with solutions and hidden
tests) and `exercises/` its release folder (what students get).
"""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIR = "solutions"
RELEASE_DIR = "exercises"


def assignments():
    """Ids of every assignment: the folders of `solutions/`."""
    if not (REPO / SOURCE_DIR).is_dir():
        raise UsageError(f"no {SOURCE_DIR}/ beside the autograder package (in {REPO}): it was installed without "
                         f"the course; install it from the course's repository with `pip install -e <repository>`")
    return sorted(p.name for p in (REPO / SOURCE_DIR).iterdir() if p.is_dir())


class UsageError(ValueError):
    """Bad input from the person at the command line: a mistyped name, a
    missing file. Its message is one line that names the problem and the fix;
    the CLI prints it and exits with status 2."""
