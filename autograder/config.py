"""The one nbgrader configuration of a course folder: its `nbgrader_config.py`.

Every course folder the CLI creates gets that file, so nbgrader's own
commands and formgrader (`jupyter lab` started in the folder) read the same
settings as `python -m autograder`; an instructor who edits it (a late
penalty, a longer time-out) changes both.
"""
from pathlib import Path

from autograder import RELEASE_DIR, SOURCE_DIR

# Python prints a warning to stderr as "file:line: SomeWarning: message".
# nbgrader scores a test cell 0 when it writes anything to stderr, so a
# harmless UserWarning from PyTorch would zero correct work; these outputs are
# dropped before grading. Errors still fail the cell: they are not stderr
# streams but error outputs.
WARNING_PATTERN = r"\w*Warning: "

# A test cell that runs longer than this is stopped and scores 0.
CELL_TIMEOUT_S = 60
# The sandboxed grader's time for one whole submission, every cell together:
# what is still running then is stopped and the tests not yet run score 0.
SUBMISSION_BUDGET_S = 180

CONFIG_FILE = "nbgrader_config.py"


def config_text() -> str:
    """The course's `nbgrader_config.py`. Paths are relative to the file
    itself, so the folder can be moved or copied."""
    return f'''\
# nbgrader's configuration of this course folder, written by `python -m autograder`.
# nbgrader's commands and formgrader (`jupyter lab` started in this folder)
# read it, and so does `python -m autograder`.
import os

c = get_config()  # noqa: F821 - provided by traitlets
here = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = here
c.CourseDirectory.course_id = "edgpt"
c.CourseDirectory.source_directory = "{SOURCE_DIR}"
c.CourseDirectory.release_directory = "{RELEASE_DIR}"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "gradebook.db")

# A warning printed by a student's code is not a failure.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"{WARNING_PATTERN}"
c.Execute.timeout = {CELL_TIMEOUT_S}
# A submission that deleted a test cell gets it back instead of being sent to
# manual grading.
c.OverwriteCells.add_missing_cells = True

# Late submissions (handed in after the assignment's due date): "none" flags
# them and takes nothing off; "zero" scores them 0. Another policy: a class
# derived from nbgrader.plugins.LateSubmissionPlugin in
# c.AssignLatePenalties.plugin_class.
c.LateSubmissionPlugin.penalty_method = "none"

# There is no exchange folder: submissions come from your learning platform
# (`python -m autograder collect`), not from nbgrader's Assignment List.
'''


def write_config(root: Path) -> Path:
    path = Path(root) / CONFIG_FILE
    if not path.exists():
        path.write_text(config_text(), encoding="utf-8")
    return path


def nbgrader_config(root: Path):
    """The course's configuration, read from its `nbgrader_config.py`
    (written first if the folder has none)."""
    from traitlets.config.loader import PyFileConfigLoader

    path = write_config(Path(root).resolve())  # nbgrader changes directory; a relative root breaks
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
