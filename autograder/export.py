"""Every grade of the gradebook as CSV: nbgrader's own columns (one row per
student and assignment: due date, submission time, raw score, late penalty,
score, maximum) and, beside them, the automatic and the hand-graded points
apart, whether hand grading is still due, and the instructor's comments."""
import csv
from pathlib import Path

from autograder.course import existing_course, gradebook
from autograder.results import assign_late_penalties

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
           "raw_score", "late_submission_penalty", "score", "max_score",
           "auto_score", "manual_score", "needs_manual_grade", "comments"]


def export(root: Path, csv_path: Path) -> Path:
    from nbgrader.api import MissingEntry

    root = existing_course(root)
    with gradebook(root) as gb:
        pairs = [(a.name, s.student.id) for a in gb.assignments for s in a.submissions]
    for assignment, student in pairs:  # hand grading may have changed the score a penalty takes
        assign_late_penalties(root, assignment, student)
    rows = []
    with gradebook(root) as gb:
        for assignment in gb.assignments:
            for student in gb.students:
                row = {"assignment": assignment.name, "duedate": assignment.duedate or "",
                       "student_id": student.id, "last_name": student.last_name or "",
                       "first_name": student.first_name or "", "email": student.email or "",
                       "max_score": assignment.max_score}
                try:
                    submission = gb.find_submission(assignment.name, student.id)
                except MissingEntry:  # nothing handed in: 0, as nbgrader's export says
                    rows.append({**row, "timestamp": "", "raw_score": 0.0, "late_submission_penalty": 0.0,
                                 "score": 0.0, "auto_score": 0.0, "manual_score": 0.0,
                                 "needs_manual_grade": False, "comments": ""})
                    continue
                grades = [g for nb in submission.notebooks for g in nb.grades]
                penalty = submission.late_submission_penalty or 0.0
                rows.append({**row, "timestamp": submission.timestamp or "", "raw_score": submission.score,
                             "late_submission_penalty": penalty, "score": max(0.0, submission.score - penalty),
                             "auto_score": sum((g.score for g in grades if g.manual_score is None
                                                and g.cell.cell_type == "code"), 0.0),
                             "manual_score": sum((g.manual_score for g in grades if g.manual_score is not None), 0.0),
                             "needs_manual_grade": submission.needs_manual_grade,
                             "comments": " | ".join(f"{c.name}: {c.manual_comment}" for nb in submission.notebooks
                                                    for c in nb.comments if c.manual_comment)})
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return Path(csv_path)
