"""Every grade of the gradebook as CSV: nbgrader's own columns (one row per
student and assignment: due date, submission time, raw score, late penalty,
score, maximum) and, beside them, the automatic and the hand-graded points
apart, whether hand grading is still due, and the instructor's comments."""
import csv
from pathlib import Path

from autograder.course import existing_course, gradebook
from autograder.results import assign_late_penalties, hand_grades

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
           "raw_score", "late_submission_penalty", "score", "max_score",
           "auto_score", "manual_score", "needs_manual_grade", "comments"]


def export(root: Path, csv_path: Path) -> Path:
    root = existing_course(root)
    with gradebook(root) as gb:
        pairs = [(a.name, s.student.id) for a in gb.assignments for s in a.submissions]
        assignments = [(a.name, a.duedate, a.max_score) for a in gb.assignments]
        students = [(s.id, s.last_name, s.first_name, s.email) for s in gb.students]
    for assignment, student in pairs:  # hand grading may have changed the score a penalty takes
        assign_late_penalties(root, assignment, student)
    rows = []
    for name, duedate, max_score in assignments:
        graded = hand_grades(root, name)
        for student, last, first, email in students:
            row = {"assignment": name, "duedate": duedate or "", "student_id": student, "last_name": last or "",
                   "first_name": first or "", "email": email or "", "max_score": max_score}
            g = graded.get(student)
            if g is None:  # nothing handed in: 0, as nbgrader's export says
                rows.append({**row, "timestamp": "", "raw_score": 0.0, "late_submission_penalty": 0.0,
                             "score": 0.0, "auto_score": 0.0, "manual_score": 0.0,
                             "needs_manual_grade": False, "comments": ""})
                continue
            manual = [v for v in g["written"].values() if v is not None] + list(g["overrides"].values())
            rows.append({**row, "timestamp": g["timestamp"] or "", "raw_score": g["score"],
                         "late_submission_penalty": g["penalty"], "score": max(0.0, g["score"] - g["penalty"]),
                         "auto_score": g["auto"], "manual_score": sum(manual, 0.0),
                         "needs_manual_grade": g["needs_manual_grade"],
                         "comments": " | ".join(f"{cell}: {text}" for cell, text in g["comments"].items())})
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return Path(csv_path)
