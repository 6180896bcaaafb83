"""The sandboxed grader against hostile and broken submissions.

Every fixture is a `feed_forward` submission (7 points: `test_ffn_visible` 1,
`test_ffn_hidden` 3, `test_ffn_num_parameters_visible` 1,
`test_ffn_num_parameters_hidden` 2) with an exact expected score per test.
The whole class, with two honest students among the hostile ones, is graded
in parallel in one run, and again one by one: the two runs must agree.
"""
import hashlib
import json
import socket
import threading
from pathlib import Path

import pytest
from grading import answer_cells, make_submission, mutate

from autograder import REPO
from autograder.course import open_course, sandboxed_autograde
from autograder.sandbox import limits_in_force

ASSIGNMENT = "feed_forward"
FFN, COUNT = "ffn", "ffn_num_parameters"
TESTS = {"test_ffn_visible": 1.0, "test_ffn_hidden": 3.0,
         "test_ffn_num_parameters_visible": 1.0, "test_ffn_num_parameters_hidden": 2.0}
FFN_TESTS = ("test_ffn_visible", "test_ffn_hidden")
COUNT_TESTS = ("test_ffn_num_parameters_visible", "test_ffn_num_parameters_hidden")
TIMEOUT = 8  # seconds per test cell in this file (the course uses 60)

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


def fixtures(course, port):
    """name -> (answers, or a callable(path) writing a broken file; expected scores; flag words)."""
    zero_ffn = {t: 0.0 for t in FFN_TESTS}
    zero_count = {t: 0.0 for t in COUNT_TESTS}
    full = dict(TESTS)
    others = course / "submitted"
    reads = [str(SOLUTION_PATH), str(course / "gradebook.db"), str(REPO / "tests" / "grading.py"),
             str(REPO / ".git" / "HEAD"), str(others / "honest_a" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
             str(Path.home() / ".bash_history")]
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


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    # A server on the grader's loopback that no submission may reach.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()

    tmp = tmp_path_factory.mktemp("sandbox")
    runs = {}
    for run, jobs in (("parallel", 2), ("one_by_one", 1)):
        course = open_course(tmp / run / "course", ASSIGNMENT)
        cases = fixtures(course, listener.getsockname()[1])
        submissions = {}
        for name, (answers, _, _) in cases.items():
            path = tmp / run / "in" / name / f"{ASSIGNMENT}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            answers(path) if callable(answers) else make_submission(ASSIGNMENT, path, answers)
            submissions[name] = path
        # Copied in first, as `collect` would: the honest students' files must survive.
        for name, path in submissions.items():
            target = course / "submitted" / name / ASSIGNMENT / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            submissions[name] = target
        watched = (REPO / "edgpt" / "__init__.py", REPO / "exercises" / ASSIGNMENT, REPO / "solutions" / ASSIGNMENT,
                   course / "submitted")
        before = _tree_digest(*watched)
        results = sandboxed_autograde(course, ASSIGNMENT, submissions, jobs=jobs, timeout=TIMEOUT)
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
