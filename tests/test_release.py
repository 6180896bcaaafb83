"""exercises/ is generated from solutions/ and must equal a fresh release."""
import json

import pytest

from autograder import RELEASE_DIR, REPO, SOURCE_DIR, assignments
from autograder.course import release
from autograder.exercise_translations import chinese, english
from grading import text_stub

pytestmark = pytest.mark.slow

ALL = assignments()


def test_every_solution_has_a_released_exercise_and_a_book_page():
    assert ALL, "no assignment found in solutions/"
    for assignment in ALL:
        assert (REPO / RELEASE_DIR / assignment).is_dir(), f"exercises/{assignment} is missing"
        name = english(assignment) or assignment  # a Chinese release shares its page and tests
        assert (REPO / "book" / f"{name}.ipynb").exists(), f"book/{name}.ipynb is missing"
        assert (REPO / "tests" / f"test_{name}.py").exists(), f"tests/test_{name}.py is missing"
    assert sorted(a for a in ALL if english(a)) == sorted(chinese(a) for a in ALL if not english(a))


@pytest.mark.parametrize("assignment", ALL)
def test_committed_exercise_equals_a_fresh_release(assignment, tmp_path):
    fresh = release(assignment, tmp_path / assignment)
    committed = REPO / RELEASE_DIR / assignment
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    assert fresh_files == committed_files
    for name in fresh_files:
        assert (fresh / name).read_bytes() == (committed / name).read_bytes(), (
            f"exercises/{assignment}/{name} differs from a fresh release: "
            f"run `make release` and commit the result")


@pytest.mark.parametrize("assignment", ALL)
def test_exercise_holds_no_solution_and_no_hidden_test(assignment):
    (source,) = (REPO / SOURCE_DIR / assignment).glob("*.ipynb")
    (student,) = (REPO / RELEASE_DIR / assignment).glob("*.ipynb")
    text = student.read_text(encoding="utf-8")
    for marker in ["BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "_mistake("]:
        assert marker not in text, f"exercises/{assignment} contains {marker!r}"
    nb = json.loads(text)
    stubs = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
    code = [c for c in stubs if c["cell_type"] == "code"]
    assert code and all("raise NotImplementedError()" in "".join(c["source"]) for c in code)
    assert all("".join(c["source"]).strip() == text_stub(assignment)
               for c in stubs if c["cell_type"] == "markdown")
    assert len(nb["cells"]) == len(json.loads(source.read_text(encoding="utf-8"))["cells"])
