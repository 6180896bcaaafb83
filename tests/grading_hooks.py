"""A grading function for the test of a grading process that dies: importable
by the grader's pool processes, which is where it runs."""
import os
import signal

from autograder.trusted import _grade_safely

VICTIM = "kills_its_grader"


def kill_grader_for_victim(assignment, notebook, course_root, timeout, budget):
    if VICTIM in str(notebook):
        os.kill(os.getpid(), signal.SIGKILL)  # what an out-of-memory kill does to the grader
    return _grade_safely(assignment, notebook, course_root, timeout, budget)


def grade_without_a_startable_sandbox(assignment, notebook, course_root, timeout, budget):
    """As if the interpreter were somewhere the sandbox cannot see: its zygote
    exits at once."""
    from autograder import sandbox

    sandbox.interpreter = lambda: "/nonexistent/python"
    sandbox._zygotes.clear()
    return _grade_safely(assignment, notebook, course_root, timeout, budget)
