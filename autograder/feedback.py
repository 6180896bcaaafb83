"""Feedback pages: one self-contained HTML page per graded student,
`feedback/<student>/<assignment>/<notebook>.html`, built from the result
record (`autograder.results`) and what the instructor entered in formgrader.

Not nbgrader's `generate_feedback`, whose pages show the hidden tests: each
test cell shows its released (visible) source and its verdict. Everything the
student wrote or the grader said is shown as text (HTML and Markdown
escaped); math is MathML, which browsers draw themselves, so a page read
offline, or uploaded alone to a learning platform, needs nothing else.
"""
from pathlib import Path

from autograder.course import existing_course, released_notebook
from autograder.markdown import literal, text, with_mathml
from autograder.results import assign_late_penalties, hand_grades, load
from autograder.trusted import COPY_FLAG

TEMPLATES = Path(__file__).parent / "templates"


def feedback(root: Path, assignment: str) -> dict:
    """Write every graded student's page; returns {student: path}."""
    import nbformat

    root = existing_course(root)
    released_path = released_notebook(root, assignment)
    records = load(root, assignment)
    for student in records:  # hand grading may have changed the score a penalty takes
        assign_late_penalties(root, assignment, student)
    hand = hand_grades(root, assignment)
    pages = {}
    for student, record in records.items():
        nb = nbformat.read(released_path, as_version=4)
        page = render(nb, record, hand.get(student, {}), f"Feedback: {assignment}, {student}")
        out = root / "feedback" / student / assignment / released_path.with_suffix(".html").name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        pages[student] = out
    return pages


def render(nb, record, hand, title) -> str:
    """The released notebook `nb` as the student's page: a summary, the
    student's answers in place, each test's verdict under it."""
    import nbformat
    from nbconvert import HTMLExporter

    cells = [nbformat.v4.new_markdown_cell(summary(record, hand, title))]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if cell.cell_type == "code":
            cell.outputs = []
        if cell.cell_type == "markdown" and not (meta.get("solution") and grade_id in record["written"]):
            cell.source = with_mathml(cell.source)  # the course's own text
        if meta.get("solution") and cell.cell_type == "code":
            cell.source = record["answers"].get(grade_id, "")
        elif meta.get("solution") and grade_id in record["written"]:
            cell.source = written_block(grade_id, record["written"][grade_id], hand)
        elif meta.get("grade") and cell.cell_type == "code" and grade_id in record["tests"]:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verdict(record["tests"][grade_id]))]
        cells.append(cell)
    nb.cells = cells
    exporter = HTMLExporter(template_name="feedback", extra_template_basedirs=[str(TEMPLATES)])
    page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return page


def _when(iso: str) -> str:
    import datetime as dt

    return f"{dt.datetime.fromisoformat(iso):%Y-%m-%d %H:%M} UTC"


def verdict(test) -> str:
    messages = test["messages"]
    head = f"{test['score']:g} / {test['max']:g} points"
    return head + (": passed\n" if not messages else "\n" + "\n".join(messages) + "\n")


def summary(record, hand, title) -> str:
    """The page's first cell: the automatic total and the hand-graded points,
    apart and together, lateness, flags, and every test in a table."""
    auto, auto_max = record["total"], record["max"]
    written_max = sum(w["max"] for w in record["written"].values())
    manual = hand.get("manual")
    lines = [f"# {text(title)}", "", f"- Automatic score: **{auto:g} / {auto_max:g}**"]
    if record["written"]:
        lines.append(f"- Written answers, graded by hand: **{manual:g} / {written_max:g}**" if manual is not None
                     else f"- Written answers, graded by hand: not graded yet (out of {written_max:g})")
    penalty = hand.get("penalty") or 0.0
    if penalty:
        lines.append(f"- Late penalty: **{penalty:g}** points")
    for test, score in hand.get("overrides", {}).items():
        lines.append(f"- `{test}`: your instructor set the score to {score:g}")
    if hand and (manual is not None or not record["written"]):
        total = hand["score"] - penalty  # nbgrader's own sum: a score set by hand wins
        lines.append(f"- Total: **{max(0.0, total):g} / {auto_max + written_max:g}**"
                     + (" (after the late penalty)" if penalty else ""))
    if record.get("timestamp"):
        lines.append(f"- Handed in {_when(record['timestamp'])}"
                     + (f", due {_when(record['duedate'])}" if record.get("duedate") else ""))
    # A flag that asks the instructor to review an answer is the instructor's.
    lines += [f"- Note: {text(flag)}" for flag in record["flags"] if COPY_FLAG not in flag]
    lines += ["", "| test | score | message |", "|---|---|---|"]
    for grade_id, test in record["tests"].items():
        message = "<br>".join(text(m) for m in test["messages"]) or "passed"
        lines.append(f"| `{grade_id}` | {test['score']:g} / {test['max']:g} | {message} |")
    return "\n".join(lines)


def written_block(grade_id, written, hand) -> str:
    """A written answer as the student wrote it (escaped), with the score and
    comment the instructor gave in formgrader."""
    given = hand.get("written", {}).get(grade_id)
    score = f"{given:g} / {written['max']:g}" if given is not None else f"not graded yet (out of {written['max']:g})"
    lines = [f"**Your answer** (`{grade_id}`, graded by hand: {score})", "",
             literal(written["text"])]
    comment = hand.get("comments", {}).get(grade_id)
    if comment:
        lines += ["", f"**Instructor's comment:** {text(comment)}"]
    return "\n".join(lines)
