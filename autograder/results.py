"""The one result record of a graded submission, and the named steps that
write it out.

A record (`autograded/<student>/<assignment>/result.json`) is what the grader
found: per test its score, maximum and failure messages (the student's
terms, as text), per written answer its maximum and the student's text, the
flags, the student's code, when it was handed in and how late. Everything
else is derived from it: the gradebook rows (`write_gradebook`), the notebook
formgrader shows (`write_notebook`), the feedback pages and the report. The
hand-graded part (formgrader's scores and comments) lives only in the
gradebook and is never touched here, so a re-grade keeps it.

`save` runs `SAVE_STEPS` in order, like nbgrader's named preprocessors.
"""
import datetime as dt
import json
from pathlib import Path

from autograder.course import gradebook, nbgrader_config
from autograder.markdown import literal

RECORD = "result.json"


def record_path(root: Path, assignment: str, student: str) -> Path:
    return Path(root) / "autograded" / student / assignment / RECORD


def load(root: Path, assignment: str) -> dict:
    """{student: record} of every graded submission of `assignment`."""
    return {p.parent.parent.name: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((Path(root) / "autograded").glob(f"*/{assignment}/{RECORD}"))}


def public(record: dict) -> dict:
    """The record as `grade --json` writes it: without the student's code."""
    return {k: v for k, v in record.items() if k not in ("answers", "added")}


def late_flag(seconds_late: float, penalty_method: str) -> str:
    hours, rest = divmod(int(seconds_late), 3600)
    return (f"handed in {hours} h {rest // 60:02d} min after the due date; late penalty: "
            f"{penalty_method!r} (LateSubmissionPlugin.penalty_method in nbgrader_config.py)")


def write_record(root, assignment, student, record, released):
    path = record_path(root, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")


def write_gradebook(root, assignment, student, record, released):
    """The automatic scores into nbgrader's gradebook: each test cell's
    auto score (it needs no manual grade), each written answer still waiting
    for one unless it has it, the submission time, the flag, and nbgrader's
    late penalty. Manual scores and comments are left as they are."""
    from nbgrader.api import MissingEntry

    with gradebook(root) as gb:
        gb.update_or_create_student(student)
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            submission = gb.add_submission(assignment, student)
        stamp = record.get("timestamp")
        submission.timestamp = dt.datetime.fromisoformat(stamp).replace(tzinfo=None) if stamp else None
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.name in record["tests"]:
                    grade.auto_score = record["tests"][grade.name]["score"]
                    grade.needs_manual_grade = False
                elif grade.name in record["written"]:
                    grade.auto_score = None
                    grade.needs_manual_grade = grade.manual_score is None
            notebook.flagged = bool(record["flags"])
        gb.db.commit()
    assign_late_penalties(root, assignment, student)


def assign_late_penalties(root, assignment, student):
    """nbgrader's own late penalty (`AssignLatePenalties` with the course's
    `LateSubmissionPlugin`) on each notebook of the submission, from its
    current score: run again after hand grading, it counts those points too."""
    from nbgrader.preprocessors import AssignLatePenalties

    config = nbgrader_config(root)
    with gradebook(root) as gb:
        notebooks = [nb.name for nb in gb.find_submission(assignment, student).notebooks]
    for name in notebooks:
        resources = {"nbgrader": {"notebook": name, "assignment": assignment, "student": student,
                                  "db_url": config.CourseDirectory.db_url}}
        AssignLatePenalties(config=config).preprocess(_empty_notebook(), resources)


def _empty_notebook():
    import nbformat

    return nbformat.v4.new_notebook()


def write_notebook(root, assignment, student, record, released):
    """The released notebook with the student's answers (code and written)
    and, under each test cell, its verdict as text: the notebook formgrader
    shows for hand grading (`autograded/<student>/<assignment>/<nb>.ipynb`)."""
    import nbformat

    nb = nbformat.read(released, as_version=4)
    cells = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if meta.get("solution") and cell.cell_type == "code":
            cell.source = record["answers"].get(grade_id, "")
        elif meta.get("solution") and grade_id in record["written"]:
            # as typed: the instructor's formgrader renders Markdown and HTML
            cell.source = literal(record["written"][grade_id]["text"])
        cells.append(cell)
        if meta.get("grade") and cell.cell_type == "code" and grade_id in record["tests"]:
            messages = record["tests"][grade_id]["messages"]
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                   text="\n".join(messages) + "\n" if messages else "passed\n")]
        for code in (record["added"].get(grade_id, []) if meta.get("solution") else []):
            cells.append(nbformat.v4.new_code_cell(code))
    nb.cells = cells
    out = record_path(root, assignment, student).with_name(Path(released).name)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


SAVE_STEPS = (write_record, write_gradebook, write_notebook)


def save(root: Path, assignment: str, student: str, record: dict, released: Path):
    """Every step of `SAVE_STEPS`, for one student: called in the grading
    process, one student at a time (SQLite is not safe for concurrent writers)."""
    for step in SAVE_STEPS:
        step(root, assignment, student, record, released)


def hand_grades(root: Path, assignment: str) -> dict:
    """What the instructor entered in formgrader, per student:
    {student: {"written": {grade_id: manual score or None}, "overrides": {test: manual score},
    "comments": {grade_id: text}, "manual": points of the written answers (None while one
    awaits its grade), "auto": points of the test cells no hand score replaced, "score":
    nbgrader's total (hand scores win), "penalty": late penalty, "needs_manual_grade",
    "timestamp"}}."""
    from nbgrader.api import MissingEntry

    out = {}
    with gradebook(root) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            return {}
        for submission in gb.assignment_submissions(assignment):
            grades = [g for nb in submission.notebooks for g in nb.grades]
            written = {g.name: g.manual_score for g in grades if g.cell.cell_type == "markdown"}
            out[submission.student.id] = {
                "written": written,
                "overrides": {g.name: g.manual_score for g in grades
                              if g.cell.cell_type == "code" and g.manual_score is not None},
                "comments": {c.name: c.manual_comment for nb in submission.notebooks for c in nb.comments
                             if c.manual_comment},
                "manual": None if None in written.values() else sum(written.values()),
                "auto": sum((g.score for g in grades if g.cell.cell_type == "code" and g.manual_score is None), 0.0),
                "score": submission.score, "penalty": submission.late_submission_penalty or 0.0,
                "needs_manual_grade": submission.needs_manual_grade, "timestamp": submission.timestamp}
    return out
