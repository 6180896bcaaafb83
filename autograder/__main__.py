"""Instructor commands: `python -m autograder <verb> ...` (see book/instructor_guide.md).

The cycle: `release` the exercises (with `--course` and `--due`, into a course
folder), `collect` the LMS download, `grade`, grade the written answers in
formgrader, `feedback`, `report`, `export`; students check their work with
`validate`; `bundle` writes the zip a student downloads. Every verb but
`release`, `validate`, `bundle` and `jupyter-setup` works on an existing course
folder (`--course`, default `./course`): an nbgrader course with its gradebook.
Bad input is answered with one line and exit status 2.
"""
import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from autograder import REPO, UsageError, assignments
from autograder import course as c
from autograder.config import SUBMISSION_BUDGET_S
from autograder.report import SIMILARITY


def _release(args):
    due = c.parse_due(args.due) if args.due else None
    if due and not args.course:
        raise UsageError("--due needs --course: the due date is kept in a course folder's gradebook")
    chosen = [c.check_assignment(a) for a in args.assignments] or assignments()
    for assignment in chosen:
        if args.course:  # into a course folder: its exercises/ is what students get
            course = c.open_course(args.course, assignment, due=due)
            print(f"released {assignment} -> {c.released_notebook(course, assignment).parent}"
                  + (f", due {due:%Y-%m-%d %H:%M %Z}" if due else ""))
        else:  # the repository's own exercises/, regenerated from solutions/
            print(f"released {assignment} -> {c.release(assignment)}")


def _collect(args):
    from autograder.collect import collect

    course = c.existing_course(args.course)
    c.open_course(course, c.check_assignment(args.assignment))
    name = c.released_notebook(course, args.assignment).name
    try:
        result = collect(course, args.assignment, name, args.archive, args.pattern)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"layout    {result['layout']}")
    for student, path in result["collected"].items():
        stamp = result["timestamps"].get(student)
        when = f"  handed in {stamp:%Y-%m-%d %H:%M} UTC" if stamp else ""
        print(f"collected {student:<24}{when}{'  (late, says the platform)' if result['late'].get(student) else ''}")
    for reason in result["skipped"]:
        print(f"skipped   {reason}")


def _grade(args):
    from autograder.grading import autograde, sandboxed_autograde
    from autograder.results import public

    course = c.existing_course(args.course)
    due = c.parse_due(args.due) if args.due else None
    c.open_course(course, c.check_assignment(args.assignment))
    if args.submitted:
        from autograder.collect import collect

        folder = Path(args.submitted)
        if not folder.is_dir():
            raise UsageError(f"--submitted {folder}: no such folder")
        try:  # <DIR>/<student_id>/<assignment>/<notebook>.ipynb, copied into the course
            found = collect(course, args.assignment, c.released_notebook(course, args.assignment).name, folder,
                            pattern=rf"^(?P<student>[^/]+)/{args.assignment}/[^/]+\.ipynb$")
        except ValueError:
            found = {"collected": {}}
        if not found["collected"]:
            raise UsageError(f"--submitted {folder}: no notebook in it laid out as "
                             f"{folder}/<student_id>/{args.assignment}/<notebook>.ipynb")
        for reason in found["skipped"]:
            print(f"skipped   {reason}")
    submissions = c.submitted_notebooks(course, args.assignment)
    if not submissions:
        raise UsageError(f"no submissions of {args.assignment} in {course / 'submitted'}: run collect first, "
                         f"or pass --submitted DIR holding DIR/<student_id>/{args.assignment}/<notebook>.ipynb")
    if due:
        c.open_course(course, args.assignment, due=due)
    stopped = None
    if args.engine == "nbgrader":
        results = autograde(course, args.assignment, submissions)
    else:
        from autograder.sandbox import SandboxUnavailable
        from autograder.trusted import GradingStopped

        try:
            results = sandboxed_autograde(course, args.assignment, submissions, jobs=args.jobs, budget=args.budget)
        except GradingStopped as e:  # what was graded is kept; the command fails with the reason
            results, stopped = e.partial, str(e)
        except SandboxUnavailable as e:
            results, stopped = {}, str(e)
    for student, r in results.items():
        written = sum(w["max"] for w in r["written"].values())
        print(f"{student:<24} {r['total']:5.1f} / {r['max']:.1f}"
              + (f"   + written answers, to grade by hand: {written:g}" if written else ""))
        for flag in r.get("flags", []):
            print(f"{'':<24} flagged: {flag}")
    if args.json:
        Path(args.json).write_text(json.dumps({s: public(r) for s, r in results.items()}, indent=2),
                                   encoding="utf-8")
    if stopped:
        sys.exit(f"grading stopped after {len(results)} of {len(submissions)} submissions: {stopped}")


def _feedback(args):
    from autograder.feedback import feedback

    course = c.existing_course(args.course)
    pages = feedback(course, c.check_assignment(args.assignment))
    for student, page in pages.items():
        print(f"feedback  {student:<24} {page}")
    if not pages:
        raise UsageError(f"nothing graded yet for {args.assignment} in {course}: run grade first")


def _report(args):
    from autograder.report import report

    if not 0 < args.similarity <= 1:
        raise UsageError(f"--similarity takes a number above 0 and at most 1, not {args.similarity}")
    result = report(c.existing_course(args.course), c.check_assignment(args.assignment), similarity=args.similarity)
    print(result["text"])
    print(f"\nwritten: {result['markdown']} and {result['plot']}")


def _export(args):
    from autograder.export import export

    course = c.existing_course(args.course)
    if not Path(args.csv).resolve().parent.is_dir():
        raise UsageError(f"--csv {args.csv}: its folder does not exist")
    print(f"exported -> {export(course, args.csv)}")


def _bundle(args):
    from autograder.bundle import write_bundle

    assignment = c.check_assignment(args.assignment)
    if args.course:  # what the course folder released (with its due date)
        notebook = c.released_notebook(c.existing_course(args.course), assignment)
    else:  # the repository's own release
        notebook = c.released_notebook(REPO, assignment)
    out = args.out or Path(f"{assignment}.zip")
    if not out.resolve().parent.is_dir():
        raise UsageError(f"--out {out}: its folder does not exist")
    print(f"wrote {out}: {', '.join(write_bundle(notebook, out, assignment))}")


def _validate(args):
    from autograder.students import validate

    failed = False
    for notebook in args.notebooks:
        problems = validate(notebook)
        failed = failed or bool(problems)
        print(f"{notebook}: {problems.summary()}")
        for problem in problems:
            print(f"  - {problem}")
    sys.exit(1 if failed else 0)


# nbgrader's JupyterLab parts that do not fit a course handed in through a
# learning platform: the Assignment and Course Lists need nbgrader's exchange
# folder on a shared machine, and its Validate button runs plain nbgrader, not
# the grader (`validate` does). Formgrader and Create Assignment stay.
JUPYTER_OFF = {"lab": ["@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:course-list",
                       "@jupyter/nbgrader:validate-assignment"],
               "server": ["nbgrader.server_extensions.assignment_list", "nbgrader.server_extensions.course_list",
                          "nbgrader.server_extensions.validate_assignment"]}


def _jupyter_setup(args):
    import subprocess

    jupyter = str(Path(sys.executable).with_name("jupyter"))
    commands = [[jupyter, "labextension", "disable", "--level=sys_prefix", name] for name in JUPYTER_OFF["lab"]]
    commands += [[jupyter, "server", "extension", "disable", "--sys-prefix", name] for name in JUPYTER_OFF["server"]]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"`{' '.join(command[1:])}` failed: {done.stderr.strip().splitlines()[-1:]}")
        print(f"off       {command[-1]}")


class _Parser(argparse.ArgumentParser):
    """argparse, with its own errors (a missing argument, an unknown verb) on one
    line like every other error of the command, pointing at --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv=None):
    parser = _Parser(prog="python -m autograder", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name, func, help):
        p = verbs.add_parser(name, help=help)
        p.set_defaults(func=func)
        if name not in ("release", "validate", "jupyter-setup", "bundle"):
            p.add_argument("--course", default="course", type=Path,
                           help="the course folder with the gradebook (default: ./course); never created here")
        return p

    due_help = "due date, ISO 8601, UTC unless it says otherwise (2026-12-10T23:59 or 2026-12-10T23:59+01:00)"
    p = verb("release", _release, "generate the student notebooks into a course folder (--course), or "
                                  "regenerate this repository's exercises/ from solutions/")
    p.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    p.add_argument("--course", type=Path, help="the course folder to release into (created if missing)")
    p.add_argument("--due", help=due_help)
    p = verb("collect", _collect, "unpack an LMS download (Canvas, Moodle, Blackboard, folders) into the course")
    p.add_argument("assignment")
    p.add_argument("archive", type=Path, help="the zip (or folder) of submissions")
    p.add_argument("--pattern", help="regular expression with a group (?P<student>...) matched on entry paths, "
                                     "for a layout collect does not know")
    p = verb("grade", _grade, "autograde every collected submission")
    p.add_argument("assignment")
    p.add_argument("--submitted", help="also take DIR/<student_id>/<assignment>/<notebook>.ipynb")
    p.add_argument("--due", help=due_help + "; sets the assignment's due date first")
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
    p.add_argument("--similarity", type=float, default=SIMILARITY,
                   help=f"report pairs of answers at least this alike after normalising (default {SIMILARITY})")
    p = verb("bundle", _bundle, "write the zip a student gets: the exercise notebook and a README")
    p.add_argument("assignment")
    p.add_argument("--course", type=Path, help="take the notebook the course folder released "
                                               "(default: this repository's exercises/)")
    p.add_argument("--out", type=Path, help="the zip to write (default: ./<assignment>.zip)")
    p = verb("export", _export, "write every grade in the gradebook as CSV")
    p.add_argument("--csv", default="grades.csv", type=Path)
    verb("jupyter-setup", _jupyter_setup, "turn off nbgrader's Assignment List, Course List and Validate "
                                          "button in this environment's JupyterLab (formgrader stays)")
    p = verb("validate", _validate, "(for students) run a notebook's visible tests through the grader")
    p.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if getattr(args, "jobs", 1) < 1:
        parser.exit(2, f"{parser.prog} grade: error: --jobs takes a whole number of at least 1\n")
    # nbgrader's gradebook code warns about its own SQLAlchemy sessions.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    try:
        args.func(args)
    except UsageError as e:
        parser.exit(2, f"{parser.prog} {args.verb}: error: {e}\n")


if __name__ == "__main__":
    main()
