"""Instructor commands: `python -m autograder <verb> ...` (see README)."""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from autograder import assignments
from autograder.course import autograde, new_course, release


def _release(args):
    for assignment in args.assignments or assignments():
        print(f"released {assignment} -> {release(assignment)}")


def _grade(args):
    submitted = Path(args.submitted)
    # <DIR>/<student_id>/<assignment>/<notebook>.ipynb
    submissions = {}
    for notebook in sorted(submitted.glob(f"*/{args.assignment}/*.ipynb")):
        submissions[notebook.parent.parent.name] = notebook
    if not submissions:
        sys.exit(f"no submissions of {args.assignment} under {submitted} "
                 f"(expected {submitted}/<student_id>/{args.assignment}/<notebook>.ipynb)")
    with tempfile.TemporaryDirectory() as tmp:
        course = new_course(Path(tmp), args.assignment)
        results = autograde(course, args.assignment, submissions)
    for student, r in results.items():
        print(f"{student:<24} {r['total']:5.1f} / {r['max']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("release", help="regenerate exercises/ from solutions/")
    p.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    p.set_defaults(func=_release)
    p = verbs.add_parser("grade", help="autograde a folder of submissions")
    p.add_argument("assignment")
    p.add_argument("--submitted", required=True, help="folder of <student>/<assignment>/<nb>.ipynb")
    p.add_argument("--json", help="write the results here")
    p.set_defaults(func=_grade)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
