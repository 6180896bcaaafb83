"""Plain `nbgrader autograde` against the sandboxed grader, on one generated class.

    .venv/bin/python benchmarks/grading.py [--students 60] [--jobs 2] [--assignment multi_head_attention]

Builds a class of correct, partial, broken and hostile submissions from the
assignment's test catalog (`tests/test_<assignment>.py`), grades it with
plain nbgrader (one kernel per student, one after the other: nbgrader has no
parallel mode) and with `python -m autograder grade --jobs N` (every
protection on), side by side in this run, and prints submissions per minute,
the ratio, the sandbox's fixed cost per submission and where the two engines
disagree. Both engines get the same per-cell time limit (`--timeout`).
Hostile submissions here are the ones plain nbgrader survives (forged passes,
an endless loop, an early exit, a flood of output); fork and memory bombs are
in tests/test_sandbox.py only.
"""
import argparse
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from grading import answer_cells, make_submission, mutate  # noqa: E402

from autograder import config  # noqa: E402
from autograder.course import open_course  # noqa: E402
from autograder.grading import autograde, sandboxed_autograde  # noqa: E402
from autograder.sandbox import bwrap_command, interpreter, limits_in_force  # noqa: E402

HOSTILE = {
    "forges_allclose": "torch.allclose = lambda *a, **k: True\n",
    "rewrites_later_cells": "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])\n",
    "endless_loop": "while True:\n    pass\n",
    "exits_early": "import os\nos._exit(0)\n",
    "floods_output": "for _ in range(2000):\n    print('x' * 500)\n",
}


def make_class(assignment, n, folder, seed=0):
    catalog = importlib.import_module(f"test_{assignment}")
    solution = answer_cells(assignment)
    first = next(iter(solution))
    kinds = (["correct"] * 4 + ["partial"] * 4 + ["broken"] + ["hostile"])
    rng = random.Random(seed)
    submissions, kinds_of = {}, {}
    for i in range(n):
        kind = kinds[i % len(kinds)]
        name = f"s{i:03d}_{kind}"
        path = folder / name / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "correct":
            variant = rng.choice([{}] + list(catalog.CORRECT.values()))
            make_submission(assignment, path, {**solution, **variant})
        elif kind == "partial":
            cell, edits, _, _ = catalog.WRONG[rng.choice(sorted(catalog.WRONG))]
            make_submission(assignment, path, {**solution, cell: mutate(solution[cell], edits)})
        elif kind == "broken":
            broken = rng.choice(["untouched", "invalid", "empty"])
            if broken == "untouched":
                make_submission(assignment, path, {})
            else:
                make_submission(assignment, path, solution)
                if broken == "invalid":
                    path.write_text(path.read_text()[:-200], encoding="utf-8")
                else:
                    nb = json.loads(path.read_text())
                    nb["cells"] = []
                    path.write_text(json.dumps(nb))
        else:
            # A wrong answer plus a trick meant to hide it (or to hurt the grader).
            trick = sorted(HOSTILE)[(i // len(kinds)) % len(HOSTILE)]
            name = f"s{i:03d}_hostile_{trick}"
            path = folder / name / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            cell, edits, _, _ = catalog.WRONG[rng.choice(sorted(w for w in catalog.WRONG
                                                                  if catalog.WRONG[w][0] == first))]
            make_submission(assignment, path, {**solution, cell: mutate(solution[cell], edits) + "\n" + HOSTILE[trick]})
        submissions[name] = path
        kinds_of[name] = kind
    return submissions, kinds_of


def plain_nbgrader(course, assignment, submissions):
    """One `nbgrader autograde` per student, as nbgrader runs them. A
    submission whose kernel dies makes nbgrader fail: it is counted as dropped."""
    results, dropped = {}, []
    for student, nb in submissions.items():
        try:
            results.update(autograde(course, assignment, {student: nb}))
        except RuntimeError:
            dropped.append(student)
    return results, dropped


def fixed_cost(repeats=3):
    """Seconds to start a sandbox and an interpreter, and to import torch in it."""
    rows = {}
    for label, program, sandboxed in (("sandbox + interpreter", "pass", True),
                                      ("sandbox + interpreter + import torch", "import torch", True),
                                      ("interpreter + import torch, no sandbox", "import torch", False)):
        times = []
        for _ in range(repeats):
            cmd, fds = bwrap_command(interpreter(), "-I", "-c", program) if sandboxed else (
                [sys.executable, "-I", "-c", program], [])
            start = time.perf_counter()
            subprocess.run(cmd, check=True, pass_fds=fds)
            times.append(time.perf_counter() - start)
            for fd in fds:
                os.close(fd)
        rows[label] = min(times)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="multi_head_attention")
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=20, help="seconds per cell, both engines")
    args = parser.parse_args()
    config.CELL_TIMEOUT_S = args.timeout  # the plain engine reads it when it builds its config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        submissions, kinds = make_class(args.assignment, args.students, tmp / "class")
        print(f"{len(submissions)} submissions of {args.assignment} on {os.cpu_count()} cores; "
              f"sandbox limits: {limits_in_force()}; cell time limit {args.timeout} s", flush=True)

        start = time.perf_counter()
        plain, dropped = plain_nbgrader(open_course(tmp / "plain", args.assignment), args.assignment, submissions)
        t_plain = time.perf_counter() - start
        print(f"plain nbgrader: {t_plain:.0f} s", flush=True)

        start = time.perf_counter()
        sandboxed = sandboxed_autograde(open_course(tmp / "sandbox", args.assignment), args.assignment,
                                        submissions, jobs=args.jobs, timeout=args.timeout)
        t_sandbox = time.perf_counter() - start
        print(f"sandboxed --jobs {args.jobs}: {t_sandbox:.0f} s", flush=True)

    n = len(submissions)
    print()
    print("| engine | submissions | seconds | submissions per minute | speed-up |")
    print("|---|---:|---:|---:|---:|")
    print(f"| plain `nbgrader autograde`, one at a time | {n} | {t_plain:.0f} | {n / t_plain * 60:.1f} | 1.0x |")
    print(f"| `grade --jobs {args.jobs}`, sandboxed | {n} | {t_sandbox:.0f} | {n / t_sandbox * 60:.1f} "
          f"| {t_plain / t_sandbox:.1f}x |")
    print()
    print("| fixed cost per submission | seconds |")
    print("|---|---:|")
    for label, seconds in fixed_cost().items():
        print(f"| {label} | {seconds:.2f} |")
    per = sorted(r["seconds"] for r in sandboxed.values())
    print(f"| whole sandboxed grading of one submission (median) | {per[len(per) // 2]:.2f} |")
    print()
    differ = {s: (plain[s]["total"] if s in plain else "dropped", sandboxed[s]["total"])
              for s in submissions if s not in plain or plain[s]["total"] != sandboxed[s]["total"]}
    print(f"Scores that differ (plain, sandboxed): {len(differ)} of {n}")
    for s, (p, q) in sorted(differ.items()):
        print(f"  {s}: {p} vs {q}")
    print(f"Flagged by the sandbox: {sorted(s for s, r in sandboxed.items() if r['flags'])}")


if __name__ == "__main__":
    main()
