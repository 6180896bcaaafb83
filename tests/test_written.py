"""Written answers as the grader reads them (`trusted.read_submission`):
taken from the Markdown answer cells, never run, kept to a bounded length."""
import json

from grading import make_submission, notebook_path

from autograder import RELEASE_DIR, SOURCE_DIR
from autograder.trusted import WRITTEN_CHARS, read_submission

ASSIGNMENT, WRITTEN = "embedding_vs_encoder", "why_embedding_is_not_encoder"


def _read(path):
    source = json.loads(notebook_path(ASSIGNMENT, SOURCE_DIR).read_text(encoding="utf-8"))
    released = json.loads(notebook_path(ASSIGNMENT, RELEASE_DIR).read_text(encoding="utf-8"))
    return read_submission(path, source, released)


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_written_answer_is_read_as_text_and_never_missing(tmp_path):
    nb = make_submission(ASSIGNMENT, tmp_path / "a.ipynb", {WRITTEN: "It is a lookup.\n*Not* an encoder."})
    answers, _, flags, written = _read(nb)
    assert written == {WRITTEN: "It is a lookup.\n*Not* an encoder."}
    assert WRITTEN not in answers and not flags


def test_a_deleted_written_answer_is_missing(tmp_path):
    nb = make_submission(ASSIGNMENT, tmp_path / "a.ipynb", {})
    data = _cells(nb)
    data["cells"] = [c for c in data["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") != WRITTEN]
    nb.write_text(json.dumps(data))
    _, _, flags, written = _read(nb)
    assert written == {} and flags == [f"answer cell `{WRITTEN}` is missing"]


def test_a_huge_or_repeated_written_answer_is_bounded(tmp_path):
    nb = make_submission(ASSIGNMENT, tmp_path / "a.ipynb", {WRITTEN: "x" * (3 * WRITTEN_CHARS)})
    data = _cells(nb)
    (cell,) = [c for c in data["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == WRITTEN]
    data["cells"].append({**cell, "source": "a second answer"})
    nb.write_text(json.dumps(data))
    _, _, flags, written = _read(nb)
    assert len(written[WRITTEN]) < WRITTEN_CHARS + 20 and written[WRITTEN].startswith("xxx")
    assert flags == [f"written answer `{WRITTEN}` is longer than {WRITTEN_CHARS} characters; only its beginning "
                     f"is kept", f"written answer `{WRITTEN}` appears more than once; the first is graded"]
