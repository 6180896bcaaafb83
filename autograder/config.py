"""The one nbgrader configuration every command and test uses."""
from pathlib import Path

from traitlets.config import Config

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


def nbgrader_config(root: Path) -> Config:
    c = Config()
    root = Path(root).resolve()  # nbgrader changes directory; a relative root breaks
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = SOURCE_DIR
    c.CourseDirectory.release_directory = RELEASE_DIR
    c.CourseDirectory.db_url = f"sqlite:///{Path(root) / 'gradebook.db'}"
    c.IgnorePattern.enabled = True
    c.IgnorePattern.pattern = WARNING_PATTERN
    c.Execute.timeout = CELL_TIMEOUT_S
    # A submission that deleted a test cell gets it back instead of being
    # sent to manual grading.
    c.OverwriteCells.add_missing_cells = True
    return c
