"""The sandboxed grader against hostile and broken submissions.

Every fixture is a `feed_forward` submission (7 points: `test_ffn_visible` 1,
`test_ffn_hidden` 3, `test_ffn_num_parameters_visible` 1,
`test_ffn_num_parameters_hidden` 2) with an exact expected score per test.
The whole class, with two honest students among the hostile ones, is graded
in parallel in one run, and again one by one: the two runs must agree. A part
of it is graded again through the command line by an unprivileged user.
Attacks on the sandbox itself are made by fixtures that report what they
managed to do (`tests/hostile/`), so a failing protection fails its test
without harming the machine.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from grading import answer_cells, make_submission, mutate

from autograder import REPO
from autograder.course import open_course
from autograder.grading import sandboxed_autograde
from autograder.sandbox import limits_in_force

ASSIGNMENT = "feed_forward"
FFN, COUNT = "ffn", "ffn_num_parameters"
TESTS = {"test_ffn_visible": 1.0, "test_ffn_hidden": 3.0,
         "test_ffn_num_parameters_visible": 1.0, "test_ffn_num_parameters_hidden": 2.0}
FFN_TESTS = ("test_ffn_visible", "test_ffn_hidden")
COUNT_TESTS = ("test_ffn_num_parameters_visible", "test_ffn_num_parameters_hidden")
TIMEOUT = 8  # seconds per test cell in this file (the course uses 60)
BUDGET = 12  # seconds per submission in this file (the course uses 180)
HOSTILE = Path(__file__).parent / "hostile"

pytestmark = pytest.mark.slow

SOLUTION = answer_cells(ASSIGNMENT)
# A wrong FFN (no activation): every forging attempt below tries to pass it.
WRONG_FFN = mutate(SOLUTION[FFN], [("self.linear2(self.act(self.linear1(x)))", "self.linear2(self.linear1(x))")])
SOLUTION_PATH = REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
# Code run in the student's process that is correct only if `leak` stayed empty.
COUNT_IF_NOTHING_LEAKED = '''
def ffn_num_parameters(d_model, d_ff):
    if leak:
        return -1  # the sandbox let something through
    return 2 * d_model * d_ff + d_model + d_ff
'''


def _forging(code):
    return {**SOLUTION, FFN: WRONG_FFN + "\n" + code}


def _hostile(name, **values):
    """A script of tests/hostile/ as a cell's code, after `NAME = value` lines."""
    return "".join(f"{k} = {v!r}\n" for k, v in values.items()) + (HOSTILE / name).read_text(encoding="utf-8")


def _raw_reply(expression):
    """`ffn_num_parameters` that writes `expression` (bytes, evaluated in the
    student's process) straight onto the worker's channel to the grader."""
    return SOLUTION[COUNT].split("def ")[0] + f"""
import gc, os, pickle, struct, time
import msgpack
from autograder import wire

def _frame(data):
    return struct.pack("<Q", len(data)) + data

def ffn_num_parameters(d_model, d_ff):
    worker = next(o for o in gc.get_objects() if type(o).__name__ == "Worker")
    data = {expression}
    os.write(worker.fd_out, data)
    time.sleep(60)
"""


# Replies no honest worker sends, each refused with the student's zero.
MALFORMED_REPLIES = {
    "reply_declares_a_terabyte": 'struct.pack("<Q", 2**40)',
    "reply_nested_100000_deep": '_frame(b"\\x91" * 100000 + b"\\xc0")',
    "reply_of_two_million_elements": 'wire.dumps({"op": "result", "value": list(range(2**21)), "rng": torch.get_rng_state()})',
    "reply_dict_of_50000_int_keys": 'wire.dumps({"op": "result", "value": {"__t__": "dict", "items": [(i << 40, 0) for i in range(50000)]}, "rng": torch.get_rng_state()})',
    "reply_tensor_larger_than_its_bytes": '_frame(msgpack.packb(msgpack.ExtType(2, bytes([0, 1]) + (10**12).to_bytes(8, "little") + b"abcd")))',
    "reply_pickle_memo_bomb": '_frame(pickle.dumps([b"x" * 2**20] * 8000))',
    "reply_missing_fields": 'wire.dumps({"op": "result", "value": {"__t__": "module", "id": 1}, "rng": torch.get_rng_state()})',
    "reply_not_a_map": 'wire.dumps([1, 2, 3])',
    "reply_bad_random_state": 'wire.dumps({"op": "result", "value": 1, "rng": "not a state"})',
    "reply_string_of_20_mb": 'wire.dumps({"op": "error", "type": "ValueError", "message": "x" * 20_000_000, "rng": torch.get_rng_state()})',
}


def fixtures(course, port):
    """name -> (answers, or a callable(path) writing a broken file; expected scores; flag words)."""
    zero_ffn = {t: 0.0 for t in FFN_TESTS}
    zero_count = {t: 0.0 for t in COUNT_TESTS}
    full = dict(TESTS)
    others = course / "submitted"
    reads = [str(SOLUTION_PATH), str(course / "gradebook.db"), str(REPO / "tests" / "grading.py"),
             str(REPO / ".git" / "HEAD"), str(others / "honest_a" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
             str(HOME_FILE), str(REPO / "README.md"), "/etc/shadow", "/proc/2/environ"]
    return {
        "honest_a": (SOLUTION, full, None),
        "honest_b": (SOLUTION, full, None),
        # ------------------------------------------------ forging a pass
        "patches_torch_and_numpy": (_forging(
            "import numpy\ntorch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
            "numpy.allclose = lambda *a, **k: True\nF.relu = lambda x: x\n"), {**full, **zero_ffn}, None),
        # Patching builtins or tracing every frame wrecks the student's own
        # process: it dies, and what had not run yet scores 0, with the reason.
        "patches_builtins": (_forging(
            "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.AssertionError = type(None)\n"
            "builtins.any = lambda *a: False\nbuiltins.all = lambda *a: True\n"),
            {**zero_ffn, **zero_count}, "the kernel died"),
        "ipython_hooks": (_forging(
            "ip = get_ipython()\nip.input_transformers_post.append(lambda lines: ['pass\\n'])\n"
            "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\nip.showtraceback = lambda *a, **k: None\n"),
            {**full, **zero_ffn}, None),
        "settrace": (_forging(
            "import sys\ndef _t(frame, event, arg):\n    frame.f_locals.clear()\n    return _t\n"
            "sys.settrace(_t)\n"), {**zero_ffn, **zero_count}, "the kernel died"),
        "prints_fake_output": (_forging(
            "print('PositionwiseFeedForward: visible tests passed')\nprint('PositionwiseFeedForward: hidden "
            "tests passed')\nimport sys\nprint('{\"score\": 7}', file=sys.stderr)\n"), {**full, **zero_ffn}, None),
        "exits_early": ({**SOLUTION, COUNT: "import os\nos._exit(0)\n" + SOLUTION[COUNT]},
                        {**full, **zero_count}, "the kernel died"),
        "sys_exit_in_a_cell": ({**SOLUTION, COUNT: SOLUTION[COUNT] + "\nimport sys\nsys.exit(0)\n"}, full, None),
        # ------------------------------------------------ reading what it must not
        "reads_files": ({**SOLUTION, COUNT: "leak = []\nfor p in %r:\n    try:\n        open(p, 'rb').read(1)\n"
                                            "        leak.append(p)\n    except OSError:\n        pass\n"
                         % reads + COUNT_IF_NOTHING_LEAKED}, full, None),
        "network": ({**SOLUTION, COUNT: "import socket\nleak = []\nfor host, port in [('pypi.org', 443), "
                                        "('127.0.0.1', %d), ('1.1.1.1', 53)]:\n    try:\n"
                                        "        socket.create_connection((host, port), timeout=2).close()\n"
                                        "        leak.append(host)\n    except OSError:\n        pass\n"
                     % port + COUNT_IF_NOTHING_LEAKED}, full, None),
        # ------------------------------------------------ doing harm
        "infinite_loop": ({**SOLUTION, COUNT: "def ffn_num_parameters(d_model, d_ff):\n    while True:\n"
                                              "        pass\n"}, {**full, **zero_count}, "timed out"),
        "memory_bomb": ({**SOLUTION, COUNT: "def ffn_num_parameters(d_model, d_ff):\n    hog = []\n"
                                            "    while True:\n        hog.append(torch.ones(2**27))\n"},
                        {**full, **zero_count}, None),
        "process_bomb": ({**SOLUTION, COUNT: "import subprocess\ndef ffn_num_parameters(d_model, d_ff):\n"
                                             "    return [subprocess.Popen(['sleep', '60']) for _ in range(500)]\n"},
                         {**full, **zero_count}, None),
        "fork_bomb": ({**SOLUTION, COUNT: "import os\ndef ffn_num_parameters(d_model, d_ff):\n"
                                          "    while True:\n        os.fork()\n"}, {**full, **zero_count}, None),
        "huge_output": ({**SOLUTION, COUNT: "def ffn_num_parameters(d_model, d_ff):\n    while True:\n"
                                            "        print('x' * 100000)\n"}, {**full, **zero_count},
                        "printed more than"),
        "leaves_processes_behind": ({**SOLUTION, COUNT: SOLUTION[COUNT] + "\nimport subprocess\nfor _ in range(3):\n"
                                     "    subprocess.Popen(['sh', '-c', 'sleep 60'], start_new_session=True)\n"},
                                    full, None),
        "segfault": ({**SOLUTION, COUNT: "import ctypes\ndef ffn_num_parameters(d_model, d_ff):\n"
                                         "    return ctypes.string_at(0)\n"}, {**full, **zero_count}, "SIGSEGV"),
        "deletes_and_rewrites_files": ({**SOLUTION, COUNT: SOLUTION[COUNT] + "\nimport shutil\nfor p in %r:\n"
                                        "    try:\n        shutil.rmtree(p)\n    except OSError:\n        pass\n"
                                        "for p in %r:\n    try:\n        open(p, 'w').write('gone')\n"
                                        "    except OSError:\n        pass\n"
                                        % ([str(REPO / "edgpt"), str(REPO / "exercises"), str(others)],
                                           [str(REPO / "edgpt" / "__init__.py"), str(course / "gradebook.db")])},
                                       full, None),
        # ------------------------------------------------ escaping the sandbox
        "tries_every_escape": ({**SOLUTION, COUNT: _hostile("escape_probe.py") + COUNT_IF_NOTHING_LEAKED},
                               full, None),
        # ------------------------------------------------ the grader's own work
        **{name: ({**SOLUTION, COUNT: _raw_reply(expression)}, {**full, **zero_count}, "malformed data")
           for name, expression in MALFORMED_REPLIES.items()},
        "ipython_lines_in_every_cell": ({FFN: SOLUTION[FFN] + "\n!echo hi" * 200,
                                         COUNT: SOLUTION[COUNT] + "\n%time x = 1" * 200}, full, None),
        # IPython's transform of 5000 lines takes minutes: in the sandbox, under the cell's limit.
        "ipython_lines_by_thousands": ({**SOLUTION, FFN: SOLUTION[FFN] + "\n!echo hi" * 5000},
                                       {t: 0.0 for t in TESTS}, "timed out"),
        "sleeps_in_every_cell": ({FFN: SOLUTION[FFN] + "\nimport time\ntime.sleep(7)\n",
                                  COUNT: SOLUTION[COUNT] + "\nimport time\ntime.sleep(7)\n"},
                                 {**full, **zero_count}, "time budget"),
        "raises_a_20_mb_message": ({**SOLUTION, COUNT: "def ffn_num_parameters(d_model, d_ff):\n"
                                                       "    raise ValueError('x' * 20_000_000)\n"},
                                   {**full, **zero_count}, None),
        "html_in_its_messages": ({**SOLUTION, COUNT: "def ffn_num_parameters(d_model, d_ff):\n    raise ValueError("
                                  "'<script>alert(1)</script><img src=x onerror=alert(2)> 2*3 weights')\n"},
                                 {**full, **zero_count}, None),
        # ------------------------------------------------ broken submissions
        "invalid_json": (lambda path: path.write_text('{"cells": [', encoding="utf-8"),
                         {t: 0.0 for t in TESTS}, "not a readable notebook"),
        "deleted_cells": (lambda path: _edit(path, lambda nb: [c for c in nb["cells"] if _id(c) not in (
            COUNT, "test_ffn_num_parameters_visible")]), {**full, **zero_count}, "is missing"),
        "duplicated_cells": (lambda path: _edit(path, lambda nb: nb["cells"] + [
            dict(c, source=WRONG_FFN) for c in nb["cells"] if _id(c) == FFN]), full, "more than once"),
        "reordered_cells": (lambda path: _edit(path, lambda nb: nb["cells"][::-1]), full, None),
        "edited_locked_cells": (lambda path: _edit(path, lambda nb: [
            dict(c, source="pass") if _id(c) in ("test_ffn_visible", "test_ffn_hidden", "imports")
            else dict(c, source=WRONG_FFN) if _id(c) == FFN else c for c in nb["cells"]]),
            {**full, **zero_ffn}, "was edited"),
        "other_kernel": (lambda path: _edit(path, None, kernel="ir"), full, "kernel 'ir'"),
        "empty_notebook": (lambda path: _edit(path, lambda nb: []), {t: 0.0 for t in TESTS}, "no cells"),
        "list_valued_grade_id": (lambda path: _edit(path, lambda nb: [
            dict(c, metadata={"nbgrader": {**c["metadata"]["nbgrader"], "grade_id": [COUNT]}}) if _id(c) == COUNT
            else c for c in nb["cells"]]), {**full, **zero_count}, "malformed grade_id"),
        "source_not_text": (lambda path: _edit(path, lambda nb: [
            dict(c, source=[7]) if _id(c) == COUNT else c for c in nb["cells"]]), {**full, **zero_count},
            "malformed source"),
    }


def _id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _edit(path, cells, kernel=None):
    make_submission(ASSIGNMENT, path, SOLUTION)
    nb = json.loads(path.read_text(encoding="utf-8"))
    if cells:
        nb["cells"] = cells(nb)
    if kernel:
        nb["metadata"]["kernelspec"]["name"] = kernel
    path.write_text(json.dumps(nb), encoding="utf-8")


def _tree_digest(*roots):
    h = hashlib.sha256()
    for root in roots:
        for p in sorted(Path(root).rglob("*")) if Path(root).is_dir() else [Path(root)]:
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


# A file directly in the home folder, which no submission may read.
HOME_FILE = Path.home() / ".edgpt-sandbox-test-secret"


def _write_class(folder, cases):
    """`folder/<student>/feed_forward/feed_forward.ipynb` for each case, as
    `grade --submitted` takes them."""
    paths = {}
    for name, (answers, _, _) in cases.items():
        path = folder / name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        answers(path) if callable(answers) else make_submission(ASSIGNMENT, path, answers)
        paths[name] = path
    return paths


def _collected(course, paths):
    # Copied in first, as `collect` would: the honest students' files must survive.
    submissions = {}
    for name, path in paths.items():
        target = course / "submitted" / name / ASSIGNMENT / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        submissions[name] = target
    return submissions


@pytest.fixture(scope="module")
def outside_tmp():
    """A scratch folder outside /tmp and the home folder (where an instructor's
    course usually is), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="edgpt-sandbox-test-", dir="/var/tmp"))
    HOME_FILE.write_text("secret")
    yield folder
    HOME_FILE.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def graded(outside_tmp):
    # A server on the grader's loopback that no submission may reach.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()

    runs = {}
    for run, jobs in (("parallel", 2), ("one_by_one", 1)):
        course = open_course(outside_tmp / run / "course", ASSIGNMENT)
        cases = fixtures(course, listener.getsockname()[1])
        submissions = _collected(course, _write_class(outside_tmp / run / "in", cases))
        watched = (REPO / "edgpt" / "__init__.py", REPO / "exercises" / ASSIGNMENT, REPO / "solutions" / ASSIGNMENT,
                   course / "submitted", HOME_FILE)
        before = _tree_digest(*watched)
        results = sandboxed_autograde(course, ASSIGNMENT, submissions, jobs=jobs, timeout=TIMEOUT, budget=BUDGET)
        after = _tree_digest(*watched)
        runs[run] = {"results": results, "cases": cases, "unchanged": before == after, "course": course}
    listener.close()
    runs["accepted"] = accepted
    return runs


def test_sandbox_limits_are_in_force_here():
    # The CI machine must enforce everything the fixtures rely on.
    assert limits_in_force() == {"bwrap": True, "cgroup": limits_in_force()["cgroup"]}
    assert limits_in_force()["cgroup"], "no writable cgroup: process and memory limits would be rlimits only"


@pytest.mark.parametrize("name", sorted(fixtures(Path("/course"), port=0)))
def test_each_threat_gets_its_exact_score(graded, name):
    results, cases = graded["parallel"]["results"], graded["parallel"]["cases"]
    _, expected, flag = cases[name]
    result = results[name]
    got = {test: result["tests"][test]["score"] for test in TESTS}
    assert got == expected, {t: result["tests"][t]["messages"] for t in TESTS if got[t] != expected[t]}
    assert result["total"] == sum(expected.values()) and result["max"] == sum(TESTS.values())
    if flag:
        assert any(flag in f for f in result["flags"]), result["flags"]


def test_the_parallel_run_equals_the_one_by_one_run(graded):
    scores = {run: {s: {t: r["tests"][t]["score"] for t in TESTS} for s, r in graded[run]["results"].items()}
              for run in ("parallel", "one_by_one")}
    assert scores["parallel"] == scores["one_by_one"]


def test_no_file_outside_the_sandbox_changed(graded):
    for run in ("parallel", "one_by_one"):
        assert graded[run]["unchanged"], "a submission changed the course, the repository or another submission"


def test_nothing_reached_the_grader_over_the_network(graded):
    assert graded["accepted"] == []


def test_every_result_is_in_the_gradebook(graded):
    from nbgrader.api import Gradebook

    from autograder.config import nbgrader_config

    course = graded["parallel"]["course"]
    with Gradebook(nbgrader_config(course).CourseDirectory.db_url) as gb:
        stored = {s.student.id: s.score for s in gb.assignment_submissions(ASSIGNMENT)}
        flagged = {s.student.id for s in gb.assignment_submissions(ASSIGNMENT) if any(
            nb.flagged for nb in s.notebooks)}
    results = graded["parallel"]["results"]
    assert stored == {s: r["total"] for s, r in results.items()}
    assert flagged == {s for s, r in results.items() if r["flags"]}


def test_no_result_carries_more_than_a_bounded_message(graded):
    for run in ("parallel", "one_by_one"):
        for name, result in graded[run]["results"].items():
            assert all(len(m) <= 1100 for t in result["tests"].values() for m in t["messages"]), name
            assert all(len(f) <= 1100 for f in result["flags"]), name
            assert len(json.dumps(result)) < 20_000, name


def test_the_grader_spends_bounded_time_on_each_submission(graded):
    # Per cell TIMEOUT, per submission BUDGET: a few seconds on top for the
    # sandbox's start and the grader's own work, whatever the submission did.
    for run in ("parallel", "one_by_one"):
        slow = {n: r["seconds"] for n, r in graded[run]["results"].items() if r["seconds"] > BUDGET + 10}
        assert not slow, slow


def test_feedback_pages_escape_what_students_wrote(graded):
    from html.parser import HTMLParser

    from autograder.feedback import feedback

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found, self.script = [], None

        def handle_starttag(self, tag, attrs):
            self.found.append((tag, dict(attrs)))
            self.script = tag == "script"

        def handle_data(self, data):
            if self.script and "alert(" in data:
                self.found.append(("script with alert", {}))

    course = graded["parallel"]["course"]
    page = feedback(course, ASSIGNMENT)["html_in_its_messages"].read_text(encoding="utf-8")
    parser = Elements()
    parser.feed(page)
    assert not [t for t, a in parser.found if t == "script with alert" or "onerror" in a or a.get("src") == "x"]
    assert "2*3 weights" in page.replace("\\*", "*") and "&lt;script&gt;alert(1)" in page


# ------------------------------------------------------------ one student to the next

TRACE_CHANNELS = ("files", "ipc", "processes", "random state")


def _row():
    """Students graded one after another by one sandbox: after each attacker,
    one that reports what it finds (`leak` must stay empty)."""
    reporter = {FFN: SOLUTION[FFN] + "\n" + _hostile("check_random_state.py"),
                COUNT: _hostile("find_traces.py") + COUNT_IF_NOTHING_LEAKED}
    row = {}
    for i, channel in enumerate(TRACE_CHANNELS):
        if channel == "random state":  # left by the function the test calls last
            code = mutate(SOLUTION[COUNT], [("    return ", "    torch.manual_seed(1234)  # for the next student\n    return ")])
        else:
            code = SOLUTION[COUNT] + "\n" + _hostile("leave_traces.py", CHANNEL=channel)
        row[f"{i}_leaves_{channel.replace(' ', '_')}"] = ({**SOLUTION, COUNT: code}, dict(TESTS), None)
        row[f"{i}_then_reports"] = (reporter, dict(TESTS), None)
    row["9_opens_the_zygotes_memory"] = ({**SOLUTION, COUNT: _hostile("escape_probe.py") + COUNT_IF_NOTHING_LEAKED},
                                         dict(TESTS), None)
    row["9_then_honest"] = (SOLUTION, dict(TESTS), None)
    return row


def test_nothing_passes_from_one_student_to_the_next(outside_tmp):
    course = open_course(outside_tmp / "row" / "course", ASSIGNMENT)
    row = _row()
    submissions = _collected(course, _write_class(outside_tmp / "row" / "in", row))
    results = sandboxed_autograde(course, ASSIGNMENT, submissions, jobs=1, timeout=TIMEOUT, budget=BUDGET)
    got = {name: {t: results[name]["tests"][t]["score"] for t in TESTS} for name in row}
    assert got == {name: expected for name, (_, expected, _) in row.items()}, {
        name: results[name]["tests"] for name in row if got[name] != row[name][1]}


# ------------------------------------------------------------ the grader as a user sees it

UNPRIVILEGED = 65534  # nobody
SETPRIV = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups", "--inh-caps=-all"]


def _as_unprivileged_user(folder):
    """A command prefix that runs the grader as `nobody`, owning `folder`. Where
    `nobody` cannot reach the interpreter (a Python under /root, as on CI),
    the grader runs instead as user 65534 of a user namespace of its own: no
    capability on the machine, not root to itself, the same code path."""
    real = os.path.realpath(sys.executable)  # the venv's scripts start it by this path
    if subprocess.run([*SETPRIV, "test", "-x", real], capture_output=True).returncode == 0:
        os.chmod(folder.parent, 0o755)
        for p in [folder, *folder.rglob("*")]:
            shutil.chown(p, UNPRIVILEGED, UNPRIVILEGED)
        return SETPRIV
    return ["unshare", "--user", f"--map-user={UNPRIVILEGED}", f"--map-group={UNPRIVILEGED}"]


# Runs a command and, on its last line of stderr, prints the peak memory (KiB) of
# the largest process it waited for: the grading run's own peak, whatever
# earlier tests in this session used.
PEAK = [sys.executable, "-c", "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)"]


def _grade_command(course, submitted, out):
    return [sys.executable, "-m", "autograder", "grade", ASSIGNMENT, "--course", str(course),
            "--submitted", str(submitted), "--jobs", "2", "--json", str(out), "--budget", str(BUDGET)]


def _cli_class(course):
    cases = fixtures(course, port=9)
    keep = ["honest_a", "tries_every_escape", "reads_files", "network", "infinite_loop", "sleeps_in_every_cell",
            "raises_a_20_mb_message", "list_valued_grade_id", *MALFORMED_REPLIES]
    return {**{name: cases[name] for name in keep}, **_row()}


@pytest.mark.parametrize("user", ["root", "unprivileged"])
def test_the_command_line_grades_hostile_students_as_any_user(outside_tmp, user):
    # `python -m autograder grade` as root (as CI runs it) and as a user
    # without privileges: the same exact scores, exit status 0, the results
    # file small, the grader's memory bounded.
    if user == "root" and os.geteuid() != 0:
        pytest.skip("needs root")
    folder = outside_tmp / f"cli-{user}"
    folder.mkdir()
    course, out = folder / "course", folder / "grades.json"
    cases = _cli_class(course)
    _write_class(folder / "submitted", cases)
    open_course(course, ASSIGNMENT)  # `grade` never creates a course
    command = [*PEAK, *_grade_command(course, folder / "submitted", out)]
    env = {**os.environ, "HOME": str(folder)}
    if user == "unprivileged":
        command = [*_as_unprivileged_user(folder), *command]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    results = json.loads(out.read_text(encoding="utf-8"))
    got = {name: {t: results[name]["tests"][t]["score"] for t in TESTS} for name in cases}
    assert got == {name: expected for name, (_, expected, _) in cases.items()}, {
        name: results[name]["tests"] for name in cases if got[name] != cases[name][1]}
    assert out.stat().st_size < 200_000
    assert peak_mb < 2048, f"a process of the grading run peaked at {peak_mb:.0f} MB"


def test_the_grader_refuses_a_sandbox_that_is_not_confined():
    from autograder import sandbox

    zygote = sandbox.Zygote(confine=False)
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="not confined: it runs as root.*CapEff"):
            zygote.spawn(deadline=__import__("time").monotonic() + 120)
    finally:
        zygote.close()


def test_a_missing_sandbox_stops_the_command_with_the_reason(outside_tmp):
    folder = outside_tmp / "no-bwrap"
    course = folder / "course"
    _write_class(folder / "submitted", {"honest_a": (SOLUTION, None, None)})
    open_course(course, ASSIGNMENT)
    env = {**os.environ, "PATH": "/nonexistent"}  # no bwrap on the PATH
    done = subprocess.run(_grade_command(course, folder / "submitted", folder / "grades.json"), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "bubblewrap (bwrap) is not installed" in done.stderr
    assert done.stderr.count("\n") <= 2, done.stderr


def test_a_killed_grading_process_costs_only_its_own_student(outside_tmp):
    import grading_hooks

    course = open_course(outside_tmp / "killed" / "course", ASSIGNMENT)
    names = ["a", "b", grading_hooks.VICTIM, "c", "d", "e"]
    submissions = _collected(course, _write_class(outside_tmp / "killed" / "in",
                                                  {n: (SOLUTION, None, None) for n in names}))
    results = sandboxed_autograde(course, ASSIGNMENT, submissions, jobs=2, timeout=TIMEOUT, budget=BUDGET,
                                  grade_one=grading_hooks.kill_grader_for_victim)
    assert {n: r["total"] for n, r in results.items()} == {n: 0.0 if n == grading_hooks.VICTIM else 7.0
                                                           for n in names}
    assert "grading process was killed" in results[grading_hooks.VICTIM]["flags"][0]


def test_the_sandbox_starts_whatever_path_started_the_interpreter(monkeypatch):
    # `tests/../.venv/bin/python` (a script started from a subfolder) names
    # a folder the sandbox does not hold; the grader starts the same
    # interpreter by its path inside the bound venv.
    from autograder.sandbox import bwrap_command, interpreter

    via_tests = REPO / "tests"  # a folder the sandbox does not hold
    roundabout = via_tests / os.path.relpath(os.path.abspath(sys.executable), via_tests)
    monkeypatch.setattr(sys, "executable", str(roundabout))
    assert ".." not in interpreter() and Path(interpreter()).exists()
    cmd, fds = bwrap_command(interpreter(), "-I", "-c", "import sys; print(sys.prefix)")
    try:
        done = subprocess.run(cmd, pass_fds=fds, capture_output=True, text=True, timeout=60)
    finally:
        for fd in fds:
            os.close(fd)
    assert done.returncode == 0 and done.stdout.strip() == str(Path(sys.prefix).resolve()), done.stderr


def test_a_sandbox_that_cannot_start_stops_grading_with_its_reason(outside_tmp):
    # Every student a 0/0 "the grader failed" and a success exit is what this
    # used to be; the grader's own failure stops the run and says why.
    import grading_hooks

    from autograder.trusted import GradingStopped

    course = open_course(outside_tmp / "unstartable" / "course", ASSIGNMENT)
    submissions = _collected(course, _write_class(outside_tmp / "unstartable" / "in",
                                                  {"a": (SOLUTION, None, None)}))
    with pytest.raises(GradingStopped, match="bwrap: execvp /nonexistent/python"):
        sandboxed_autograde(course, ASSIGNMENT, submissions, jobs=2, timeout=TIMEOUT, budget=BUDGET,
                            grade_one=grading_hooks.grade_without_a_startable_sandbox)
