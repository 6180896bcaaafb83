"""Release and autograde through nbgrader's Python API."""
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from autograder import RELEASE_DIR, REPO, SOURCE_DIR
from autograder.config import nbgrader_config


def _api(root: Path):
    # nbgrader's Gradebook runs the `alembic` command by name: make sure the one
    # beside this interpreter is found even when the venv is not activated.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ["PATH"]
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(root)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _check(result, what):
    if not result["success"]:
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('error') or result.get('log')}")


def new_course(root: Path, assignment: str) -> Path:
    """A course folder at `root` holding this repository's source of `assignment`,
    released and registered in a fresh gradebook."""
    root = Path(root)
    shutil.copytree(REPO / SOURCE_DIR / assignment, root / SOURCE_DIR / assignment)
    _check(_api(root).generate_assignment(assignment), f"generate_assignment {assignment}")
    return root


def release(assignment: str, dest: Path = None) -> Path:
    """Regenerate the student version of `assignment` from its solution notebook.

    Writes `exercises/<assignment>/` (or `dest`), replacing what was there. It is
    generated in a scratch course so the repository never gets a gradebook.
    """
    dest = Path(dest) if dest else REPO / RELEASE_DIR / assignment
    with tempfile.TemporaryDirectory() as tmp:
        course = new_course(Path(tmp), assignment)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(course / RELEASE_DIR / assignment, dest)
    return dest


def _error_messages(notebook: Path):
    """{grade_id: [messages]} from the error outputs of a graded notebook."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    messages = {}
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if grade_id and out.get("output_type") == "error":
                messages.setdefault(grade_id, []).append(f"{out['ename']}: {out['evalue']}")
    return messages


def autograde(root: Path, assignment: str, submissions: dict) -> dict:
    """Grade `{student_id: notebook_path}` with plain `nbgrader autograde`.

    `root` is a course made by `new_course`. Returns, per student,
    `{"total", "max", "seconds", "tests": {grade_id: {"score", "max", "messages"}},
    "written": {grade_id: {"max"}}}`: `seconds` is the wall time of that
    student's autograde; `written` lists the answers an instructor grades by
    hand, which are not part of the automatic total.
    """
    from nbgrader.api import Gradebook

    root = Path(root)
    api = _api(root)
    seconds = {}
    for student, notebook in submissions.items():
        target = root / "submitted" / student / assignment / Path(notebook).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook, target)
        start = time.perf_counter()
        _check(api.autograde(assignment, student), f"autograde {student}")
        seconds[student] = time.perf_counter() - start

    results = {}
    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        for student, notebook in submissions.items():
            graded = root / "autograded" / student / assignment / Path(notebook).name
            messages = _error_messages(graded)
            tests, written = {}, {}
            for nb in gb.find_submission(assignment, student).notebooks:
                for grade in nb.grades:
                    if grade.cell.cell_type == "markdown":
                        # A written answer, graded by hand: not part of the automatic score.
                        written[grade.name] = {"max": float(grade.max_score)}
                        continue
                    tests[grade.name] = {
                        "score": float(grade.score),
                        "max": float(grade.max_score),
                        "messages": messages.get(grade.name, []),
                    }
            results[student] = {
                "total": sum(t["score"] for t in tests.values()),
                "max": sum(t["max"] for t in tests.values()),
                "seconds": seconds[student],
                "tests": tests,
                "written": written,
            }
    return results
