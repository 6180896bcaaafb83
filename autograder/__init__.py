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
    return sorted(p.name for p in (REPO / SOURCE_DIR).iterdir() if p.is_dir())
