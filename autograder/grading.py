"""Grading a class: the sandboxed grader (`autograder.trusted`, the default)
or plain `nbgrader autograde` (`--engine nbgrader`), each producing the same
result records (`autograder.results`), with the submission time and how late
it was added here."""
import shutil
import time
from pathlib import Path

from autograder.config import CELL_TIMEOUT_S, SUBMISSION_BUDGET_S
from autograder.course import (_api, _check, due_date, gradebook, nbgrader_config, open_course,
                               released_notebook, submission_time)
from autograder.results import late_flag, public, save


def _with_time(record, notebook, due, penalty_method):
    """The record with its submission time, seconds late and, if late, a flag."""
    stamp = submission_time(notebook)
    late = max(0.0, (stamp - due).total_seconds()) if stamp and due else 0.0
    record.update(timestamp=stamp.isoformat() if stamp else None, late_seconds=late,
                  duedate=due.isoformat() if due else None)
    if late:
        record["flags"].append(late_flag(late, penalty_method))
    return record


def sandboxed_autograde(root: Path, assignment: str, submissions: dict, jobs: int = 1,
                        timeout: float = CELL_TIMEOUT_S, budget: float = SUBMISSION_BUDGET_S, **options) -> dict:
    """Grade `{student_id: notebook_path}` in sandboxes, `jobs` at a time
    (`autograder.trusted`), saving each record as it comes (`results.save`).
    Returns {student: record} without the student's code (`results.public`).
    Raises `trusted.GradingStopped` (holding what was graded) when the
    grader itself cannot go on."""
    from autograder.trusted import GradingStopped, grade

    root = open_course(Path(root), assignment)
    released, due = released_notebook(root, assignment), due_date(root, assignment)
    method = nbgrader_config(root).LateSubmissionPlugin.penalty_method

    def saved(student, record):
        save(root, assignment, student, _with_time(record, submissions[student], due, method), released)

    try:
        results = grade(assignment, submissions, root, jobs=jobs, on_result=saved, timeout=timeout,
                        budget=budget, **options)
    except GradingStopped as e:
        e.partial = {s: public(r) for s, r in e.partial.items()}
        raise
    return {s: public(r) for s, r in results.items()}


def autograde(root: Path, assignment: str, submissions: dict) -> dict:
    """Grade `{student_id: notebook_path}` with plain `nbgrader autograde`
    (student code and tests in one kernel, no protection), and save the same
    records as the sandboxed grader. Returns {student: record} as
    `sandboxed_autograde` does."""
    import nbformat

    from autograder.trusted import NOT_IMPLEMENTED, _not_attempted, assignment_info, read_submission

    root = open_course(Path(root), assignment)
    api, released = _api(root), released_notebook(root, assignment)
    due, method = due_date(root, assignment), nbgrader_config(root).LateSubmissionPlugin.penalty_method
    source_nb, released_nb, info = assignment_info(root, assignment)
    results = {}
    for student, notebook in submissions.items():
        target = root / "submitted" / student / assignment / released.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(notebook).resolve() != target.resolve():
            shutil.copyfile(notebook, target)
        start = time.perf_counter()
        _check(api.autograde(assignment, student), f"autograde {student}")
        seconds = time.perf_counter() - start
        answers, added, flags, texts = read_submission(target, source_nb, released_nb)
        graded = nbformat.read(root / "autograded" / student / assignment / released.name, as_version=4)
        messages = {c.metadata.get("nbgrader", {}).get("grade_id"): [
            NOT_IMPLEMENTED if o["ename"] == "NotImplementedError" else f"{o['ename']}: {o['evalue']}"
            for o in c.get("outputs", []) if o.get("output_type") == "error"] for c in graded.cells}
        tests, written = {}, {}
        with gradebook(root) as gb:
            for nb in gb.find_submission(assignment, student).notebooks:
                for g in nb.grades:
                    if g.cell.cell_type == "markdown":  # graded by hand, not part of the automatic score
                        written[g.name] = {"max": float(g.max_score), "text": texts.get(g.name, "")}
                    else:
                        tests[g.name] = {"score": float(g.score), "max": float(g.max_score),
                                         "messages": messages.get(g.name, [])}
        record = {"total": sum(t["score"] for t in tests.values()), "max": sum(t["max"] for t in tests.values()),
                  "seconds": seconds, "tests": tests, "written": written, "flags": flags,
                  "answers": answers, "added": added,
                  "not_attempted": _not_attempted(answers, released_nb, info)}
        save(root, assignment, student, _with_time(record, target, due, method), released)
        results[student] = public(record)
    return results
