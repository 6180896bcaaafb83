"""The instructor's cycle through nbgrader's Python API: release, collect,
autograde, feedback, export. A course folder (`root`) is an nbgrader course:
`solutions/` (copied from this repository), `exercises/` (its release),
`submitted/`, `autograded/`, `feedback/` and `gradebook.db`."""
import contextlib
import functools
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from autograder import RELEASE_DIR, REPO, SOURCE_DIR
from autograder.config import CELL_TIMEOUT_S, SUBMISSION_BUDGET_S, nbgrader_config


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


def open_course(root: Path, assignment: str) -> Path:
    """A course folder at `root` holding this repository's source of `assignment`,
    released and registered in its gradebook (created if missing).

    Idempotent: an existing course keeps its gradebook, submissions and grades;
    the assignment is generated again only when its source changed.
    """
    root = Path(root)
    source, ours = root / SOURCE_DIR / assignment, REPO / SOURCE_DIR / assignment
    if not ours.is_dir():
        raise ValueError(f"unknown assignment {assignment!r}: no folder {ours}")
    if source.is_dir() and _same_tree(source, ours) and (root / RELEASE_DIR / assignment).is_dir():
        return root
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(ours, source)
    _check(_api(root).generate_assignment(assignment), f"generate_assignment {assignment}")
    return root


def _same_tree(a: Path, b: Path) -> bool:
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return files(a) == files(b)


def release(assignment: str, dest: Path = None) -> Path:
    """Regenerate the student version of `assignment` from its solution notebook.

    Writes `exercises/<assignment>/` (or `dest`), replacing what was there. It is
    generated in a scratch course so the repository never gets a gradebook.
    """
    dest = Path(dest) if dest else REPO / RELEASE_DIR / assignment
    with tempfile.TemporaryDirectory() as tmp:
        course = open_course(Path(tmp), assignment)
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

    `root` is a course made by `open_course`. Returns, per student,
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
        if Path(notebook).resolve() != target.resolve():
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


# ------------------------------------------------------------------ collect

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_NOTEBOOK_BYTES = 50 * 2**20


def _released_notebook(root: Path, assignment: str) -> Path:
    (nb,) = (Path(root) / RELEASE_DIR / assignment).glob("*.ipynb")
    return nb


def _student_of(name: str, pattern):
    """The student id an archive entry belongs to: `pattern`'s group `student`,
    else the entry's top folder, else its file name up to the first "_"."""
    if pattern:
        m = re.search(pattern, name)
        return m.group("student") if m else None
    parts = name.split("/")
    return parts[0] if len(parts) > 1 else parts[0].split("_", 1)[0]


def collect(root: Path, assignment: str, archive: Path, pattern: str = None) -> dict:
    """Unpack the submissions of `assignment` from an LMS download into the course.

    `archive` is a zip (or a folder) holding one notebook per student, as
    `<student>/<anything>.ipynb` or `<student>_<anything>.ipynb`; `pattern`, a
    regular expression with a group named `student`, overrides that rule. Each
    notebook lands in `submitted/<student>/<assignment>/` under the released
    notebook's name, which is what nbgrader grades. Entry paths are never used
    as file paths. Returns `{"collected": {student: path}, "skipped": [reason]}`.
    """
    root, archive = Path(root), Path(archive)
    open_course(root, assignment)
    name = _released_notebook(root, assignment).name
    entries = {}  # student -> (timestamp, entry name, read)
    skipped = []
    with contextlib.ExitStack() as stack:
        for entry, stamp, size, read in _archive_items(archive, stack):
            if not entry.endswith(".ipynb") or "/." in "/" + entry or "__MACOSX" in entry:
                skipped.append(f"{entry}: not a notebook")
                continue
            student = _student_of(entry, pattern)
            if student is None:
                skipped.append(f"{entry}: does not match {pattern}")
                continue
            if not STUDENT_ID.match(student):
                skipped.append(f"{entry}: no usable student id (got {student!r})")
                continue
            if size > MAX_NOTEBOOK_BYTES:
                skipped.append(f"{entry}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
                continue
            if student in entries:
                older, newer = sorted([entries[student], (stamp, entry, read)], key=lambda e: e[:2])
                skipped.append(f"{older[1]}: {student} handed in more than one notebook; "
                               f"kept the newer {newer[1]}")
                entries[student] = newer
            else:
                entries[student] = (stamp, entry, read)
        collected = {}
        for student, (_, entry, read) in sorted(entries.items()):
            target = root / "submitted" / student / assignment / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read())
            collected[student] = target
    return {"collected": collected, "skipped": skipped}


def _archive_items(archive: Path, stack):
    """(entry name, timestamp, size, read) for every file of a zip or a folder."""
    if archive.is_dir():
        return [(p.relative_to(archive).as_posix(), p.stat().st_mtime, p.stat().st_size, p.read_bytes)
                for p in sorted(archive.rglob("*")) if p.is_file()]
    z = stack.enter_context(zipfile.ZipFile(archive))
    return [(i.filename, time.mktime(i.date_time + (0, 0, -1)), i.file_size, functools.partial(z.read, i))
            for i in z.infolist() if not i.is_dir()]

def submitted_notebooks(root: Path, assignment: str) -> dict:
    """{student: notebook} for every submission of `assignment` in the course."""
    root = Path(root)
    return {p.parent.parent.name: p
            for p in sorted((root / "submitted").glob(f"*/{assignment}/*.ipynb"))}


# ----------------------------------------------------------------- feedback

def feedback(root: Path, assignment: str) -> dict:
    """One HTML page per graded student, `feedback/<student>/<assignment>/<nb>.html`.

    Not nbgrader's `generate_feedback`, whose pages show the hidden tests: each
    test cell shows its released (visible) source, its score and the failure
    message, never the hidden code or its traceback.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbgrader.api import Gradebook

    root = Path(root)
    open_course(root, assignment)
    released = nbformat.read(_released_notebook(root, assignment), as_version=4)
    visible = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in released.cells}
    exporter = HTMLExporter(template_name="lab")
    pages = {}
    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        for student, graded in sorted(_autograded_notebooks(root, assignment).items()):
            nb = nbformat.read(graded, as_version=4)
            (record,) = gb.find_submission(assignment, student).notebooks
            scores = {g.name: g for g in record.grades}
            rows = []
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                grade_id = meta.get("grade_id")
                if not (meta.get("grade") and cell.cell_type == "code"):
                    continue
                cell.source = visible.get(grade_id, "# (test cell)")
                for out in cell.get("outputs", []):
                    if out.output_type == "error":
                        out.traceback = [describe_error(out)]
                grade = scores.get(grade_id)
                messages = [describe_error(o) for o in cell.get("outputs", []) if o.output_type == "error"]
                if grade is not None:
                    rows.append(f"| `{grade_id}` | {grade.score:g} / {grade.max_score:g} | "
                                f"{'<br>'.join(markdown_text(m) for m in messages) or 'passed'} |")
            total = sum(g.score for g in scores.values() if g.cell.cell_type == "code")
            maximum = sum(g.max_score for g in scores.values() if g.cell.cell_type == "code")
            written = [g.name for g in scores.values() if g.cell.cell_type == "markdown"]
            summary = [f"# Feedback: {assignment}, {student}", "",
                       f"Automatic score: **{total:g} / {maximum:g}**.", ""]
            if written:
                summary += [f"Written answers ({', '.join(written)}) are graded by hand.", ""]
            summary += ["| test | score | message |", "|---|---|---|", *rows]
            nb.cells.insert(0, nbformat.v4.new_markdown_cell("\n".join(summary)))
            html, _ = exporter.from_notebook_node(nb)
            out = root / "feedback" / student / assignment / graded.with_suffix(".html").name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(html, encoding="utf-8")
            pages[student] = out
    return pages


def markdown_text(text: str) -> str:
    """A student's text as literal Markdown: no HTML, no emphasis, no table
    break ("2*3 weights" stays "2*3 weights", `<script>` stays text)."""
    import html

    escaped = re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", text)
    return html.escape(escaped, quote=False).replace("\n", " ")


def describe_error(output) -> str:
    """An error output of a test cell, in the student's terms."""
    if output.get("ename") == "NotImplementedError":
        return "NotImplementedError: not implemented yet (the answer cell still raises NotImplementedError)"
    return f"{output.get('ename')}: {output.get('evalue')}"


def _autograded_notebooks(root: Path, assignment: str) -> dict:
    return {p.parent.parent.name: p
            for p in sorted((Path(root) / "autograded").glob(f"*/{assignment}/*.ipynb"))}


# ------------------------------------------------------------------- export

def export(root: Path, csv_path: Path) -> Path:
    """Every student's score in every assignment of the gradebook, as CSV
    (nbgrader's own format: one row per student and assignment)."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    with Gradebook(nbgrader_config(Path(root)).CourseDirectory.db_url) as gb:
        CsvExportPlugin(to=str(csv_path)).export(gb)
    return Path(csv_path)


# ------------------------------------------------------------ for students

def validate(notebook: Path) -> list:
    """Run a student's notebook top to bottom as the grader will (fresh kernel,
    the course's configuration, warnings ignored) and return one line per
    problem: a test cell that fails, an answer cell that raises, a changed
    locked cell. An empty list means every visible test passes."""
    import nbformat
    from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, Execute, IgnorePattern
    from nbgrader.validator import Validator

    notebook = Path(notebook).resolve()
    config = nbgrader_config(notebook.parent)
    validator = Validator(config=config)
    validator.preprocessors = [CheckCellMetadata, ClearOutput, Execute, IgnorePattern]
    nb = nbformat.read(notebook, as_version=4)
    problems = [f"locked cell `{c.metadata.nbgrader.get('grade_id')}` was edited: restore it from the release"
                for c in validator._get_changed_cells(nb)]
    ran = validator._preprocess(nb) if not problems else nb
    for cell in validator._get_failed_cells(ran):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
        errors = [describe_error(o) for o in cell.outputs if o.output_type == "error"]
        errors += [o.text.strip() for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        problems.append(f"`{grade_id}` fails: {' / '.join(errors)}")
    return problems


# ------------------------------------------------------- sandboxed grading

def sandboxed_autograde(root: Path, assignment: str, submissions: dict, jobs: int = 1,
                        timeout: float = CELL_TIMEOUT_S, budget: float = SUBMISSION_BUDGET_S, **options) -> dict:
    """Grade `{student_id: notebook_path}` in sandboxes, `jobs` at a time
    (`autograder.trusted`), and write every result to the gradebook and an
    autograded notebook for `feedback`. Returns the results as `autograde`
    does, each with its `flags`."""
    from autograder.trusted import GradingStopped, grade

    root = open_course(Path(root), assignment)
    released = _released_notebook(root, assignment)

    def save(student, result):
        # One writer, in this process, one student at a time: SQLite is not
        # safe for concurrent writers.
        _record(root, assignment, student, result)
        _write_autograded(root, assignment, student, released, result)

    def public(results):
        for result in results.values():
            result.pop("answers", None)
            result.pop("added", None)
        return results

    try:
        return public(grade(assignment, submissions, root, jobs=jobs, on_result=save, timeout=timeout,
                            budget=budget, **options))
    except GradingStopped as e:
        public(e.partial)
        raise


def _record(root, assignment, student, result):
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        gb.update_or_create_student(student)
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            submission = gb.add_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.name in result["tests"]:
                    grade.auto_score = result["tests"][grade.name]["score"]
            notebook.flagged = bool(result["flags"])
        gb.db.commit()


def _write_autograded(root, assignment, student, released, result):
    """The released notebook with the student's answers and, under each test
    cell, its verdict: what `feedback` turns into a page."""
    import nbformat

    nb = nbformat.read(released, as_version=4)
    cells = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if meta.get("solution") and cell.cell_type == "code":
            cell.source = result["answers"].get(grade_id, "")
        cells.append(cell)
        if meta.get("grade") and cell.cell_type == "code" and grade_id in result["tests"]:
            test = result["tests"][grade_id]
            cell.outputs = [nbformat.v4.new_output("error", ename=m.split(":", 1)[0],
                                                   evalue=m.split(":", 1)[-1].strip(), traceback=[m])
                            for m in test["messages"]] or [
                nbformat.v4.new_output("stream", name="stdout", text="passed\n")]
        for code in (result["added"].get(grade_id, []) if meta.get("solution") else []):
            cells.append(nbformat.v4.new_code_cell(code))
    nb.cells = cells
    out = Path(root) / "autograded" / student / assignment / Path(released).name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


# ------------------------------------------------------------------- report

def mistake_of(message: str) -> str:
    """A failure message reduced to the mistake it names, so students who made
    the same one count together: no exception name, no call with its random
    arguments, numbers as #."""
    text = re.sub(r"^\w*(Error|Exception)\w*: ", "", message.strip())
    text = re.sub(r"^[\w.]+\([^)]*\)\s*:\s*", "", text)
    return re.sub(r"\d+(\.\d+)?", "#", text)[:160]


SIMILARITY = 0.9  # answers at least this alike (after normalising) are reported as a pair


def similar_answers(root: Path, assignment: str, threshold: float = SIMILARITY) -> list:
    """Pairs of students whose answer to one cell are near-identical once
    comments, docstrings, formatting and local names are set aside:
    [(similarity, cell, student_a, student_b)], most alike first. Answers
    left as released are not compared."""
    import nbformat

    from autograder.similarity import similar_pairs

    released = nbformat.read(_released_notebook(root, assignment), as_version=4)
    stubs = [c.source for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")]
    answers = {}
    for student, graded in _autograded_notebooks(root, assignment).items():
        nb = nbformat.read(graded, as_version=4)
        answers[student] = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
                            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    return similar_pairs(answers, threshold, skip=stubs), answers


def _similarity_page(pairs, answers, threshold):
    """Markdown with each pair's two cells side by side (an HTML table, escaped)."""
    import html

    lines = [f"# Similar answers (similarity at least {threshold:g}, after normalising)", ""]
    if not pairs:
        lines.append("No pair of students above the threshold.")
    for score, cell, a, b in pairs:
        lines += [f"## `{cell}`: {a} and {b}, {score:.2f}", "", "<table><tr>",
                  f"<th>{html.escape(a)}</th><th>{html.escape(b)}</th></tr><tr>",
                  *[f"<td><pre>{html.escape(answers[s][cell])}</pre></td>" for s in (a, b)], "</tr></table>", ""]
    return "\n".join(lines) + "\n"


def report(root: Path, assignment: str, similarity: float = SIMILARITY) -> dict:
    """Score distribution and how many students hit each mistake, from the
    graded notebooks, and the pairs of near-identical answers; writes
    `reports/<assignment>.md`, `.png` and `-similar.md` in the course."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat
    from nbgrader.api import Gradebook

    root = Path(root)
    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        submissions = gb.assignment_submissions(assignment)
        totals = {s.student.id: sum(g.score for nb in s.notebooks for g in nb.grades
                                    if g.cell.cell_type == "code") for s in submissions}
        maximum = sum(g.max_score for nb in gb.find_assignment(assignment).notebooks
                      for g in nb.grade_cells if g.cell_type == "code")
        flagged = sorted(s.student.id for s in submissions if any(nb.flagged for nb in s.notebooks))
    mistakes = {}  # (test, mistake) -> students
    for student, graded in _autograded_notebooks(root, assignment).items():
        nb = nbformat.read(graded, as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and cell.cell_type == "code":
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error":
                        key = (meta["grade_id"], mistake_of(describe_error(out)))
                        mistakes.setdefault(key, set()).add(student)
    ranked = sorted(mistakes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    scores = sorted(totals.values())
    lines = [f"# Report: {assignment}", "",
             f"{len(scores)} graded submissions, maximum {maximum:g} points (automatic part).", ""]
    if scores:
        mean, median = statistics.mean(scores), statistics.median(scores)
        lines += [f"Mean {mean:.2f}, median {median:g}, full marks {sum(s == maximum for s in scores)}, "
                  f"zero {sum(s == 0 for s in scores)}.", "",
                  "| score | students |", "|---:|---:|"]
        lines += [f"| {v:g} | {scores.count(v)} |" for v in sorted(set(scores), reverse=True)]
    lines += ["", f"Flagged for review: {', '.join(flagged) if flagged else 'none'}.", "",
              "| test | mistake | students |", "|---|---|---:|"]
    lines += [f"| `{test}` | {text.replace('|', '/')} | {len(who)} |" for (test, text), who in ranked]
    pairs, answers = similar_answers(root, assignment, similarity)
    lines += ["", f"Pairs of near-identical answers (similarity at least {similarity:g}): {len(pairs)}"
              + (f", listed with their code in reports/{assignment}-similar.md." if pairs else ".")]
    lines += [f"- `{cell}`: {a} and {b} ({score:.2f})" for score, cell, a, b in pairs]
    out_dir = root / "reports"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{assignment}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / f"{assignment}-similar.md").write_text(_similarity_page(pairs, answers, similarity), encoding="utf-8")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 1.6]})
    ax1.hist(scores, bins=[x - 0.5 for x in range(int(maximum) + 2)], color="tab:blue", edgecolor="white")
    ax1.set(xlabel="automatic score", ylabel="students", title=f"{assignment}: scores")
    top = ranked[:12][::-1]
    ax2.barh([f"{t}: {m[:60]}" for (t, m), _ in top], [len(w) for _, w in top], color="tab:red")
    ax2.set(xlabel="students", title="most frequent mistakes")
    ax2.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"{assignment}.png", dpi=110)
    plt.close(fig)
    return {"text": "\n".join(lines), "markdown": out_dir / f"{assignment}.md", "plot": out_dir / f"{assignment}.png",
            "similar": pairs,
            "mistakes": {k: sorted(v) for k, v in mistakes.items()}, "totals": totals, "flagged": flagged}
