"""Sandboxed grading of a submission, and of a whole class in parallel.

For each submission the grader (this process) reads the notebook as data,
starts a sandboxed worker (`autograder.sandbox`) and walks the *instructor's*
notebook cell by cell:

- the imports and other locked code cells run on both sides, as released;
- each answer cell runs in the worker, as the student wrote it (with any
  cells the student added after it);
- each test cell, visible or hidden, runs here, from the instructor's
  notebook, against stand-ins for the student's names (`autograder.remote`).

A test passes when its code finishes without an exception. The student's
process can return wrong values, crash, hang or print; it cannot reach the
test code, the grader's `torch`, or the verdict. A crash or time-out scores
that test and every later one 0 with the reason.
"""
import contextlib
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from autograder import RELEASE_DIR, SOURCE_DIR
from autograder.config import CELL_TIMEOUT_S

KERNEL = "python3"
STARTUP_S = 60  # on top of the first spawn's time: a new zygote imports torch


def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _meta(cell):
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return nbg if isinstance(nbg, dict) else {}


def _python(source):
    """A cell's source as plain Python (IPython magics become calls that do nothing)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - left as is; compiling it reports the error
        return source


def read_submission(path, source_nb, released_nb):
    """The student's code, keyed by answer cell, and what looks wrong with the file.

    Returns (answers {grade_id: code}, added {grade_id or None: [code]}, flags).
    Cells are matched by their nbgrader id, so reordered cells are harmless;
    locked cells always come from the instructor's notebook."""
    flags = []
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        cells = nb["cells"]
        if not isinstance(cells, list):
            raise TypeError("cells is not a list")
    except Exception as e:  # noqa: BLE001 - any unreadable file is graded 0
        return {}, {}, [f"the file is not a readable notebook ({type(e).__name__}: {str(e)[:200]})"]
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name") if isinstance(nb.get("metadata"), dict) else None
    if kernel not in (None, KERNEL):
        flags.append(f"the notebook asks for kernel {kernel!r}; it was run with {KERNEL}")
    if not cells:
        flags.append("the notebook has no cells")
    answer_ids = [_meta(c)["grade_id"] for c in source_nb["cells"] if _meta(c).get("solution")]
    released = {_meta(c).get("grade_id"): _source(c) for c in released_nb["cells"]}
    locked = {_meta(c)["grade_id"] for c in source_nb["cells"]
              if _meta(c).get("grade_id") and not _meta(c).get("solution")}
    answers, added, anchor = {}, {}, None
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        grade_id = _meta(cell).get("grade_id")
        if grade_id in answer_ids and cell.get("cell_type") == "code":
            if grade_id in answers:
                flags.append(f"answer cell `{grade_id}` appears more than once; the first was graded")
                continue
            answers[grade_id] = _source(cell)
            anchor = grade_id
        elif grade_id in locked:
            if _source(cell) != released.get(grade_id):
                flags.append(f"locked cell `{grade_id}` was edited; the released version was used")
        elif grade_id is None and cell.get("cell_type") == "code" and _source(cell).strip():
            added.setdefault(anchor, []).append(_source(cell))
        elif grade_id is not None and grade_id not in answer_ids:
            flags.append(f"unknown cell `{grade_id}` was ignored")
    for grade_id in answer_ids:
        if grade_id not in answers:
            flags.append(f"answer cell `{grade_id}` is missing")
    return answers, added, flags


def _message(e):
    if isinstance(e, NotImplementedError):
        return "NotImplementedError: not implemented yet (the answer cell still raises NotImplementedError)"
    return f"{type(e).__name__}: {e}"


def grade_submission(assignment, notebook, course_root, timeout=CELL_TIMEOUT_S):
    """Grade one notebook in its own sandbox; returns the result record (see `grade`)."""
    import torch

    from autograder.remote import KernelDied, Session
    from autograder import sandbox as sandboxes

    torch.set_num_threads(1)
    start = time.perf_counter()
    course_root = Path(course_root)
    (source_path,) = (course_root / SOURCE_DIR / assignment).glob("*.ipynb")
    source_nb = json.loads(source_path.read_text(encoding="utf-8"))
    released_nb = json.loads((course_root / RELEASE_DIR / assignment / source_path.name).read_text(encoding="utf-8"))
    answers, added, flags = read_submission(notebook, source_nb, released_nb)
    unreadable = not answers and not added and flags and "readable" in flags[0]

    tests, written, dead = {}, {}, None
    namespace = {"__name__": "__main__"}
    sandbox = None if unreadable else sandboxes.spawn(course_root, time.monotonic() + timeout + STARTUP_S)
    session = None if sandbox is None else Session(sandbox, sandbox.fd_to, sandbox.fd_from)
    try:
        for cell in source_nb["cells"]:
            meta = _meta(cell)
            grade_id = meta.get("grade_id")
            if cell.get("cell_type") != "code":
                if meta.get("grade"):
                    written[grade_id] = {"max": float(meta.get("points", 0))}
                continue
            if meta.get("grade"):
                tests[grade_id] = _run_test(cell, namespace, session, dead, unreadable, flags, timeout)
                if session is not None and dead is None and tests[grade_id].get("died"):
                    dead = tests[grade_id].pop("died")
                tests[grade_id].pop("died", None)
                continue
            if dead or session is None:
                continue
            try:
                session.deadline = time.monotonic() + timeout
                if meta.get("solution"):
                    codes = [answers.get(grade_id, "")] + added.get(grade_id, [])
                else:  # a locked cell: both sides run the released code
                    exec(compile(_source(cell), grade_id or "cell", "exec"), namespace)  # noqa: S102
                    # cells the student added before every answer cell run after the imports
                    codes = [_source(cell)] + (added.get(None, []) if grade_id == "imports" else [])
                for i, code in enumerate(codes):
                    _, names = session.exec_cell(_python(code), f"<{grade_id}>")
                    if i == 0 and not meta.get("solution"):
                        continue  # a locked cell: the grader ran it itself and keeps its own names
                    for k, v in names.items():
                        if not isinstance(namespace.get(k), type(os)):  # the grader's modules stay its own
                            namespace[k] = v
            except KernelDied as e:
                dead = str(e)
    finally:
        if sandbox is not None:
            sandbox.close()
            if sandbox.killed_for:
                flags.append(f"the kernel was stopped: it {sandbox.killed_for}")
    if dead:
        flags.append(dead)
    return {"total": sum(t["score"] for t in tests.values()),
            "max": sum(t["max"] for t in tests.values()),
            "seconds": time.perf_counter() - start, "tests": tests, "written": written,
            "flags": flags, "answers": answers, "added": added}


def _run_test(cell, namespace, session, dead, unreadable, flags, timeout):
    from autograder.remote import KernelDied

    points = float(_meta(cell).get("points", 0))
    if unreadable:
        return {"score": 0.0, "max": points, "messages": [flags[0]]}
    if dead:
        return {"score": 0.0, "max": points, "messages": [f"not run: {dead}"]}
    session.deadline = time.monotonic() + timeout
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(_source(cell), _meta(cell).get("grade_id", "test"), "exec"), namespace)  # noqa: S102
        return {"score": points, "max": points, "messages": []}
    except KernelDied as e:
        return {"score": 0.0, "max": points, "messages": [str(e)], "died": str(e)}
    except Exception as e:  # noqa: BLE001 - any failure of the test code fails the test
        return {"score": 0.0, "max": points, "messages": [_message(e)]}


def _grade_safely(assignment, notebook, course_root, timeout):
    """`grade_submission`, with a failure of the grader itself reported as a
    flagged zero for that student instead of stopping the whole class."""
    try:
        return grade_submission(assignment, notebook, course_root, timeout)
    except Exception as e:  # noqa: BLE001 - the grader's own error: flag, keep going
        import traceback

        return {"total": 0.0, "max": 0.0, "seconds": 0.0, "tests": {}, "written": {}, "answers": {}, "added": {},
                "flags": [f"the grader failed on this submission, grade it by hand: {type(e).__name__}: {e}"],
                "traceback": traceback.format_exc()}


def grade(assignment, submissions, course_root, jobs=1, on_result=None, timeout=CELL_TIMEOUT_S):
    """Grade `{student: notebook}`, `jobs` at a time; returns `{student: result}`.

    Each result: `{"total", "max", "seconds", "tests": {grade_id: {"score",
    "max", "messages"}}, "written": {grade_id: {"max"}}, "flags": [...]}`.
    `on_result(student, result)` is called in this process as each one
    finishes, one at a time (the gradebook is written there)."""
    from autograder.sandbox import BWRAP, SandboxUnavailable

    if not BWRAP:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap); "
                                 "without it, --engine nbgrader grades without protection")
    results = {}
    if jobs <= 1:
        for student, nb in submissions.items():
            results[student] = _grade_safely(assignment, nb, course_root, timeout)
            if on_result:
                on_result(student, results[student])
        return results
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_grade_safely, assignment, nb, course_root, timeout): s for s, nb in submissions.items()}
        for future in as_completed(futures):
            student = futures[future]
            results[student] = future.result()
            if on_result:
                on_result(student, results[student])
    return {s: results[s] for s in submissions}
