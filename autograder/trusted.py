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
from autograder.config import CELL_TIMEOUT_S, SUBMISSION_BUDGET_S

KERNEL = "python3"
# The cell that installs the course's package on Colab or Binder
# (autograder/publish.py): the grader brings its own environment, so it is never run.
INSTALL_CELL = "install"
STARTUP_S = 60  # on top of the first spawn's time: a new zygote imports torch
MESSAGE_CHARS = 1000  # of one failure message in the results
WRITTEN_CHARS = 20_000  # of one written answer (about eight pages)
# What the report sets apart from mistakes: a file that is not a notebook, an
# answer cell left as released.
UNREADABLE = "the file is not a readable notebook"
NOT_IMPLEMENTED = "NotImplementedError: not implemented yet (the answer cell still raises NotImplementedError)"


def _source(cell):
    """A cell's source, or None when it is not text (a student can write anything)."""
    src = cell.get("source", "") if isinstance(cell, dict) else None
    if isinstance(src, list) and all(isinstance(x, str) for x in src):
        return "".join(src)
    return src if isinstance(src, str) else None


def _meta(cell):
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return nbg if isinstance(nbg, dict) else {}


def read_submission(path, source_nb, released_nb):
    """The student's code, keyed by answer cell, and what looks wrong with the file.

    Returns (answers {grade_id: code}, added {grade_id or None: [code]}, flags,
    written {grade_id: text}): `written` holds the Markdown answer cells, which
    are never run, only shown to the instructor who grades them by hand.
    Cells are matched by their nbgrader id, so reordered cells are harmless;
    locked cells always come from the instructor's notebook."""
    flags = []
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        cells = nb["cells"]
        if not isinstance(cells, list):
            raise TypeError("cells is not a list")
    except Exception as e:  # noqa: BLE001 - any unreadable file is graded 0
        return {}, {}, [f"{UNREADABLE} ({type(e).__name__}: {str(e)[:200]})"], {}
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    kernel = meta.get("kernelspec", {}).get("name") if isinstance(meta.get("kernelspec"), dict) else None
    if kernel not in (None, KERNEL):
        flags.append(f"the notebook asks for kernel {str(kernel)[:40]!r}; it was run with {KERNEL}")
    if not cells:
        flags.append("the notebook has no cells")
    answer_ids = [_meta(c)["grade_id"] for c in source_nb["cells"] if _meta(c).get("solution")]
    written_ids = {_meta(c)["grade_id"] for c in source_nb["cells"]
                   if _meta(c).get("solution") and c.get("cell_type") == "markdown"}
    released = {_meta(c).get("grade_id"): _source(c) for c in released_nb["cells"]}
    locked = {_meta(c)["grade_id"] for c in source_nb["cells"]
              if _meta(c).get("grade_id") and not _meta(c).get("solution")}
    answers, added, written, anchor = {}, {}, {}, None
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        grade_id = _meta(cell).get("grade_id")
        if grade_id is not None and not isinstance(grade_id, str):
            flags.append(f"a cell with a malformed grade_id ({type(grade_id).__name__}) was ignored")
            continue
        if _source(cell) is None:
            flags.append(f"cell `{grade_id or '(added)'}` has a malformed source and was ignored")
            continue
        if grade_id in written_ids:
            if grade_id in written:
                flags.append(f"written answer `{grade_id}` appears more than once; the first is graded")
            else:
                written[grade_id] = _source(cell)
                if len(written[grade_id]) > WRITTEN_CHARS:
                    flags.append(f"written answer `{grade_id}` is longer than {WRITTEN_CHARS} characters; "
                                 f"only its beginning is kept")
                    written[grade_id] = _cut(written[grade_id], WRITTEN_CHARS)
            continue
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
        if grade_id not in answers and grade_id not in written:
            flags.append(f"answer cell `{grade_id}` is missing")
    return answers, added, flags, written


def _message(e):
    if isinstance(e, NotImplementedError):
        return NOT_IMPLEMENTED
    return _cut(f"{type(e).__name__}: {e}")


def _cut(text, limit=MESSAGE_CHARS):
    return text if len(text) <= limit else text[:limit] + " [...]"


def _fresh_random_state():
    """Each student starts from a random state of its own, never the one the
    previous student of this process left behind."""
    import random

    import torch

    torch.manual_seed(int.from_bytes(os.urandom(8), "little"))
    random.seed(os.urandom(16))


def _top_level_names(code):
    """Names a cell defines at top level (functions, classes, assignments),
    private ones (`_x`) left out."""
    import ast

    try:
        body = ast.parse(code).body
    except SyntaxError:
        return []
    names = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in names if not n.startswith("_")]


def _edgpt_imports(code):
    import ast

    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("edgpt.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgpt"):
            found |= ({node.module} if node.module != "edgpt" else {f"edgpt.{a.name}" for a in node.names})
    return found


class Assignment:
    """What grading one assignment needs from its instructor notebook, read once:

    - `items`: each code answer cell's grade_id and the names it is graded on
      (what its solution defines at top level): the only names of the
      student's that the test cells ever see;
    - `item_of`: for each test cell, the answer cell it tests (the last one
      before it);
    - `reference`: the solution's own definitions, run here, in the grader;
      while one item is tested, the student's process calls these back for
      the other items' functions, so one mistake costs one item;
    - `course_modules`: the course's modules the released notebook's locked
      cells import (with what they import): all of `edgpt` the sandbox holds;
    - `course_forms`: the normalised code of the course's own implementation
      of each item (the solution's cell, `edgpt`'s function or class)."""

    def __init__(self, source_nb, released_nb):
        from autograder.similarity import normalise

        self.items, self.item_of, current, code_cells = {}, {}, None, []
        for cell in source_nb["cells"]:
            meta = _meta(cell)
            if cell.get("cell_type") != "code" or meta.get("grade_id") == INSTALL_CELL:
                continue
            if meta.get("solution"):
                current = meta["grade_id"]
                self.items[current] = _top_level_names(_source(cell))
            elif meta.get("grade"):
                self.item_of[meta["grade_id"]] = current
            code_cells.append((meta, _source(cell)))
        self.graded = {n for names in self.items.values() for n in names}
        locked = [src for c in released_nb["cells"] if c.get("cell_type") == "code"
                  and not _meta(c).get("solution") and not _meta(c).get("grade")
                  and _meta(c).get("grade_id") != INSTALL_CELL for src in [_source(c)]]
        self.course_modules = _with_dependencies(set().union(*[_edgpt_imports(c) for c in locked]))
        self.reference = {"__name__": "__reference__"}
        for meta, src in code_cells:
            if not meta.get("grade"):
                exec(compile(src, f"<solution {meta.get('grade_id')}>", "exec"), self.reference)  # noqa: S102
        self.course_forms = {}
        for meta, src in code_cells:
            if meta.get("solution"):
                forms = {normalise(src)} | {normalise(c) for c in _course_sources(self.items[meta["grade_id"]])}
                self.course_forms[meta["grade_id"]] = forms

    def references_besides(self, item):
        """The reference functions of every item but `item`."""
        import types

        return {n: self.reference[n] for other, names in self.items.items() if other != item for n in names
                if isinstance(self.reference.get(n), types.FunctionType)}


def _with_dependencies(modules):
    """`modules` (names like edgpt.attention) and the edgpt modules they import."""
    import importlib.util

    todo, found = list(modules), set()
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        if name in found or spec is None or not spec.origin:
            continue
        found.add(name)
        todo += sorted(_edgpt_imports(Path(spec.origin).read_text(encoding="utf-8")) - found)
    return found


def _course_sources(names):
    """The source of every function or class of `edgpt` that has one of `names`."""
    import importlib
    import inspect
    import pkgutil

    import edgpt

    sources = []
    for info in pkgutil.iter_modules(edgpt.__path__):
        try:
            module = importlib.import_module(f"edgpt.{info.name}")
        except ImportError:
            continue  # a module needing an optional package (the pretrained models)
        for name in names:
            obj = getattr(module, name, None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
                sources.append(inspect.getsource(obj))
    return sources


_assignments = {}


def assignment_info(course_root, assignment):
    """`Assignment` for the course's copy of `assignment` (read once per process)."""
    source_path = next((Path(course_root) / SOURCE_DIR / assignment).glob("*.ipynb"))
    released_path = Path(course_root) / RELEASE_DIR / assignment / source_path.name
    key = (str(source_path), source_path.stat().st_mtime_ns, released_path.stat().st_mtime_ns)
    if key not in _assignments:
        _assignments[key] = (json.loads(source_path.read_text(encoding="utf-8")),
                             json.loads(released_path.read_text(encoding="utf-8")))
        _assignments[key] += (Assignment(*_assignments[key]),)
    return _assignments[key]


class _CourseImplementation:
    """Bound in the test cells' namespace instead of a graded name that is the
    course's own code: whatever a test does with it fails, with the reason."""

    def __init__(self, name):
        self.name = name

    def _refuse(self, *args, **kwargs):
        from autograder.remote import COURSE_MESSAGE, CourseCode

        raise CourseCode(f"{self.name} {COURSE_MESSAGE}")

    __call__ = __instancecheck__ = _refuse

    def __getattr__(self, name):
        self._refuse()


def _bind_graded(namespace, bound, info, session):
    """The test cells' view of the student: the graded names, as the
    student's cells left them, and nothing else."""
    for name in info.graded:
        value = bound.get(name, _UNBOUND)
        if value is _UNBOUND:
            namespace.pop(name, None)
        elif getattr(value, "_course", False) is True or any(value is f for f in session.callbacks.values()):
            namespace[name] = _CourseImplementation(name)
        else:
            namespace[name] = value


_UNBOUND = object()


def grade_submission(assignment, notebook, course_root, timeout=CELL_TIMEOUT_S, budget=SUBMISSION_BUDGET_S,
                     check=None):
    """Grade one notebook in its own sandbox; returns the result record (see `grade`).

    `timeout` bounds each cell, `budget` the whole submission (seconds).
    `check`, a released notebook (as data), makes this a student's own check
    (`validate`): its visible tests instead of the instructor's notebook, the
    student's own functions throughout, and the worker a plain local process
    (`sandbox.LocalChild`)."""
    import torch

    from autograder.remote import KernelDied, Session
    from autograder import sandbox as sandboxes

    torch.set_num_threads(1)
    _fresh_random_state()
    start = time.perf_counter()
    if check is None:
        source_nb, released_nb, info = assignment_info(course_root, assignment)
    else:
        from autograder.similarity import normalise

        source_nb = released_nb = check
        info = Assignment(check, check)
        stubs = {_meta(c).get("grade_id"): normalise(_source(c)) for c in check["cells"] if _meta(c).get("solution")}
        info.course_forms = {gid: forms - {stubs.get(gid)} for gid, forms in info.course_forms.items()}
    answers, added, flags, texts = read_submission(notebook, source_nb, released_nb)
    unreadable = not answers and not added and flags and "readable" in flags[0]
    flags += _course_copies(answers, info)

    tests, written, dead = {}, {}, None
    namespace, bound = {"__name__": "__main__"}, {}
    deadline = time.monotonic() + timeout + STARTUP_S
    sandbox = None if unreadable else (sandboxes.spawn(deadline, info.course_modules) if check is None
                                       else sandboxes.LocalChild(deadline))
    session = None if sandbox is None else Session(sandbox, sandbox.fd_to, sandbox.fd_from,
                                                   budget_end=time.monotonic() + budget, budget=budget,
                                                   course_modules=info.course_modules)
    try:
        for cell in source_nb["cells"]:
            meta = _meta(cell)
            grade_id = meta.get("grade_id")
            if cell.get("cell_type") != "code":
                if meta.get("grade"):
                    written[grade_id] = {"max": float(meta.get("points", 0)), "text": texts.get(grade_id, "")}
                continue
            if meta.get("grade"):
                if session is not None:
                    _bind_graded(namespace, bound, info, session)
                references = None if check else info.references_besides(info.item_of.get(grade_id))
                tests[grade_id] = _run_test(cell, namespace, session, dead, unreadable, flags, timeout, references)
                tests[grade_id]["item"] = info.item_of.get(grade_id)
                if session is not None and dead is None and tests[grade_id].get("died"):
                    dead = tests[grade_id].pop("died")
                tests[grade_id].pop("died", None)
                continue
            if dead or session is None or grade_id == INSTALL_CELL:
                continue
            try:
                session.start(timeout)
                if meta.get("solution"):
                    codes = [answers.get(grade_id, "")] + added.get(grade_id, [])
                else:  # a locked cell: both sides run the released code
                    exec(compile(_source(cell), grade_id or "cell", "exec"), namespace)  # noqa: S102
                    # cells the student added before every answer cell run after the imports
                    codes = [_source(cell)] + (added.get(None, []) if grade_id == "imports" else [])
                for i, code in enumerate(codes):
                    _, names = session.exec_cell(code, f"<{grade_id}>")
                    if i == 0 and not meta.get("solution"):
                        continue  # a locked cell: the grader ran it itself and keeps its own names
                    bound.update({k: v for k, v in names.items() if k in info.graded})
            except KernelDied as e:
                dead = str(e)
    finally:
        if sandbox is not None:
            sandbox.close()
            if sandbox.killed_for:
                flags.append(f"the kernel was stopped: it {sandbox.killed_for}")
    if dead:
        flags.append(dead)
    flags = [_cut(f) for f in flags]
    return {"total": sum(t["score"] for t in tests.values()),
            "max": sum(t["max"] for t in tests.values()),
            "seconds": time.perf_counter() - start, "tests": tests, "written": written,
            "flags": flags, "answers": answers, "added": added,
            "not_attempted": [] if unreadable else _not_attempted(answers, released_nb, info)}


def _not_attempted(answers, released_nb, info):
    """The answer cells handed in as released (or not at all)."""
    from autograder.similarity import normalise

    stubs = {_meta(c).get("grade_id"): _source(c) for c in released_nb["cells"] if _meta(c).get("solution")}
    return [item for item in info.items
            if answers.get(item) is None or normalise(answers[item]) == normalise(stubs.get(item) or "")]


def _course_copies(answers, info):
    """Answers that are the course's own implementation, as code: flagged for
    a person to look at (a student may have written the same thing)."""
    from autograder.similarity import normalise

    same = [f"`{gid}`" for gid, code in answers.items() if normalise(code) in info.course_forms.get(gid, ())]
    return [f"answer cell{'s' * (len(same) > 1)} {', '.join(same)}: {COPY_FLAG} once "
            f"comments, formatting and local names are set aside; review it"] if same else []


COPY_FLAG = "the course's own implementation"  # a flag for the instructor, never a failure


def _run_test(cell, namespace, session, dead, unreadable, flags, timeout, references=None):
    from autograder.remote import KernelDied

    points = float(_meta(cell).get("points", 0))
    if unreadable:
        return {"score": 0.0, "max": points, "messages": [flags[0]]}
    if dead:
        return {"score": 0.0, "max": points, "messages": [f"not run: {dead}"]}
    session.start(timeout)
    out = io.StringIO()
    try:
        if references:
            session.substitute(references)
        failure = None
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(_source(cell), _meta(cell).get("grade_id", "test"), "exec"), namespace)  # noqa: S102
        except Exception as e:  # noqa: BLE001 - raised below, once the student's own names are back
            failure = e
        if references:
            session.restore()
        if failure is not None:
            raise failure
        return {"score": points, "max": points, "messages": []}
    except KernelDied as e:
        return {"score": 0.0, "max": points, "messages": [str(e)], "died": str(e)}
    except Exception as e:  # noqa: BLE001 - any failure of the test code fails the test
        return {"score": 0.0, "max": points, "messages": [_message(e)]}


def _grade_safely(assignment, notebook, course_root, timeout, budget):
    """`grade_submission`, with an unexpected failure on one submission
    reported as that student's zero, with the reason, instead of stopping the
    class. A sandbox that cannot be had (`SandboxUnavailable`) stops it: that
    is the grader's machine, not the student."""
    from autograder.sandbox import SandboxUnavailable

    try:
        return grade_submission(assignment, notebook, course_root, timeout, budget)
    except SandboxUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 - the grader's own error on this submission: a flagged zero
        import traceback

        return _zero(f"the grader could not grade this submission ({type(e).__name__}: {_cut(str(e), 300)}); "
                     f"it scores 0", traceback=traceback.format_exc())


def _zero(reason, **extra):
    return {"total": 0.0, "max": 0.0, "seconds": 0.0, "tests": {}, "written": {}, "answers": {}, "added": {},
            "not_attempted": [], "flags": [reason], **extra}


class GradingStopped(RuntimeError):
    """The grader itself could not go on; `partial` holds the results so far."""

    def __init__(self, message, partial):
        super().__init__(message)
        self.partial = partial


def grade(assignment, submissions, course_root, jobs=1, on_result=None, timeout=CELL_TIMEOUT_S,
          budget=SUBMISSION_BUDGET_S, grade_one=None):
    """Grade `{student: notebook}`, `jobs` at a time; returns `{student: result}`.

    Each result: `{"total", "max", "seconds", "tests": {grade_id: {"score",
    "max", "messages"}}, "written": {grade_id: {"max", "text"}}, "flags": [...],
    "answers": {grade_id: code}, "added": {grade_id: [code]}}`.
    `on_result(student, result)` is called in this process as each one
    finishes, one at a time (the gradebook is written there). A grading
    process that dies takes no one else with it: the submissions it held are
    graded again, each alone, and one that kills its grading process alone
    too scores 0 with that reason. `grade_one` replaces `_grade_safely` (tests).
    Raises `GradingStopped` when the sandbox cannot be had at all."""
    from autograder.sandbox import BWRAP, SandboxUnavailable

    if not BWRAP:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap); "
                                 "without it, --engine nbgrader grades without protection")
    grade_one = grade_one or _grade_safely
    results = {}

    def deliver(student, result):
        results[student] = result
        if on_result:
            on_result(student, result)

    try:
        if jobs <= 1:
            for student, nb in submissions.items():
                deliver(student, grade_one(assignment, nb, course_root, timeout, budget))
        else:
            pending, alone = dict(submissions), {}
            while pending:
                in_flight = _pool(assignment, pending, course_root, jobs, timeout, budget, grade_one, deliver)
                alone.update({s: pending[s] for s in in_flight})
                pending = {s: nb for s, nb in pending.items() if s not in results and s not in alone}
            for student, nb in alone.items():  # each was in a process that died: again, alone
                if _pool(assignment, {student: nb}, course_root, 1, timeout, budget, grade_one, deliver):
                    deliver(student, _zero("the grading process was killed while it graded this submission, "
                                           "alone; it scores 0"))
    except SandboxUnavailable as e:
        raise GradingStopped(str(e), {s: results[s] for s in submissions if s in results}) from None
    return {s: results[s] for s in submissions}


_started = None  # in a pool process: where it says which student it takes


def _pool_process(queue):
    global _started
    _started = queue


def _grade_in_pool(grade_one, student, *args):
    _started.put(student)
    return grade_one(*args)


def _pool(assignment, submissions, course_root, jobs, timeout, budget, grade_one, deliver):
    """Grade in `jobs` processes until done or until one of them dies; returns
    the students that were being graded when it died (empty if none did)."""
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("forkserver")
    started, done = ctx.SimpleQueue(), set()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_pool_process,
                             initargs=(started,)) as pool:
        futures = {pool.submit(_grade_in_pool, grade_one, s, assignment, nb, course_root, timeout, budget): s
                   for s, nb in submissions.items()}
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:
                break
            done.add(futures[future])
            deliver(futures[future], result)
        else:
            return []
    begun = set()
    while not started.empty():
        begun.add(started.get())
    return sorted(begun - done)
