"""Instructor commands: `python -m autograder <verb> ...` (see book/instructor_guide.md).

The cycle: `release` the exercises, `collect` the LMS download, `grade`,
`feedback`, `report`, `export`; students check their work with `validate`. Every verb but `release` works on a course folder
(`--course`, default `./course`): an nbgrader course with its gradebook.
"""
import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from autograder import assignments
from autograder import course as c
from autograder.config import SUBMISSION_BUDGET_S


def _release(args):
    for assignment in args.assignments or assignments():
        print(f"released {assignment} -> {c.release(assignment)}")


def _collect(args):
    result = c.collect(args.course, args.assignment, args.archive, args.pattern)
    for student, path in result["collected"].items():
        print(f"collected {student:<24} {path}")
    for reason in result["skipped"]:
        print(f"skipped   {reason}")
    if not result["collected"]:
        sys.exit(f"no submissions found in {args.archive}")


def _grade(args):
    course = Path(args.course)
    c.open_course(course, args.assignment)
    if args.submitted:
        # <DIR>/<student_id>/<assignment>/<notebook>.ipynb, copied into the course.
        found = c.collect(course, args.assignment, Path(args.submitted),
                          pattern=rf"^(?P<student>[^/]+)/{args.assignment}/[^/]+\.ipynb$")
        for reason in found["skipped"]:
            print(f"skipped   {reason}")
    submissions = c.submitted_notebooks(course, args.assignment)
    if not submissions:
        sys.exit(f"no submissions of {args.assignment} in {course / 'submitted'}: run collect first, "
                 f"or pass --submitted DIR holding DIR/<student_id>/{args.assignment}/<notebook>.ipynb")
    stopped = None
    if args.engine == "nbgrader":
        results = c.autograde(course, args.assignment, submissions)
    else:
        from autograder.sandbox import SandboxUnavailable
        from autograder.trusted import GradingStopped

        try:
            results = c.sandboxed_autograde(course, args.assignment, submissions, jobs=args.jobs,
                                            budget=args.budget)
        except GradingStopped as e:  # what was graded is kept; the command fails with the reason
            results, stopped = e.partial, str(e)
        except SandboxUnavailable as e:
            results, stopped = {}, str(e)
    for student, r in results.items():
        print(f"{student:<24} {r['total']:5.1f} / {r['max']:.1f}")
        for flag in r.get("flags", []):
            print(f"{'':<24} flagged: {flag}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    if stopped:
        sys.exit(f"grading stopped after {len(results)} of {len(submissions)} submissions: {stopped}")


def _feedback(args):
    pages = c.feedback(args.course, args.assignment)
    for student, page in pages.items():
        print(f"feedback  {student:<24} {page}")
    if not pages:
        sys.exit(f"nothing graded yet for {args.assignment}: run grade first")


def _report(args):
    if not 0 < args.similarity <= 1:
        sys.exit(f"--similarity takes a number above 0 and at most 1, not {args.similarity}")
    result = c.report(args.course, args.assignment, similarity=args.similarity)
    print(result["text"])
    print(f"\nwritten: {result['markdown']} and {result['plot']}")


def _export(args):
    print(f"exported -> {c.export(args.course, args.csv)}")


def _validate(args):
    failed = False
    for notebook in args.notebooks:
        problems = c.validate(notebook)
        failed = failed or bool(problems)
        print(f"{notebook}: " + ("every visible test passes" if not problems else f"{len(problems)} problem(s)"))
        for problem in problems:
            print(f"  - {problem}")
    sys.exit(1 if failed else 0)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name, func, help):
        p = verbs.add_parser(name, help=help)
        p.set_defaults(func=func)
        if name not in ("release", "validate"):
            p.add_argument("--course", default="course", type=Path,
                           help="the course folder with the gradebook (default: ./course)")
        return p

    p = verb("release", _release, "regenerate exercises/ from solutions/")
    p.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    p = verb("collect", _collect, "unpack an LMS zip of submissions into the course")
    p.add_argument("assignment")
    p.add_argument("archive", type=Path, help="zip (or folder) of <student>/<x>.ipynb or <student>_<x>.ipynb")
    p.add_argument("--pattern", help="regular expression with a group (?P<student>...) matched on entry paths")
    p = verb("grade", _grade, "autograde every collected submission")
    p.add_argument("assignment")
    p.add_argument("--submitted", help="also take DIR/<student_id>/<assignment>/<notebook>.ipynb")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="submissions graded at once, each in its own sandbox (default: one per core)")
    p.add_argument("--budget", type=float, default=SUBMISSION_BUDGET_S,
                   help=f"seconds for one whole submission, every cell together (default: {SUBMISSION_BUDGET_S})")
    p.add_argument("--engine", choices=("sandbox", "nbgrader"), default="sandbox",
                   help="sandbox (default): student code in a sandbox, tests in the grader; "
                        "nbgrader: plain `nbgrader autograde`, student code and tests in one kernel")
    p = verb("feedback", _feedback, "write one HTML feedback page per graded student")
    p.add_argument("assignment")
    p = verb("report", _report, "score distribution, the most frequent mistakes (a table and a plot) and "
                                "pairs of near-identical answers")
    p.add_argument("assignment")
    p.add_argument("--similarity", type=float, default=c.SIMILARITY,
                   help=f"report pairs of answers at least this alike after normalising (default {c.SIMILARITY})")
    p = verb("export", _export, "write every grade in the gradebook as CSV")
    p.add_argument("--csv", default="grades.csv", type=Path)
    p = verb("validate", _validate, "(for students) run a notebook as the grader will and list what fails")
    p.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    # nbgrader's gradebook code warns about its own SQLAlchemy sessions.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    args.func(args)


if __name__ == "__main__":
    main()
