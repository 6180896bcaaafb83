"""Hand grading as the instructor does it: a course graded by the command
line, formgrader in a real Jupyter server started in the course folder, a
score and a comment typed into formgrader's page in a headless browser, and
what comes out the other end (the CSV export, a re-grade, the feedback page
read offline).

One course for the whole module (`embedding_vs_encoder`: 7 automatic points
and one written answer, `why_embedding_is_not_encoder`, 2 points, graded by
hand): `alice` hands in the solution with a written answer of ours, which
holds HTML and a Markdown emphasis that must both stay text; `bob` hands in
the untouched exercise.
"""
import csv
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from grading import answer_cells, make_submission

from autograder.course import gradebook, released_notebook
from autograder.sandbox import limits_in_force

pytestmark = pytest.mark.slow

ASSIGNMENT = "embedding_vs_encoder"
WRITTEN = "why_embedding_is_not_encoder"
AUTO_POINTS, WRITTEN_POINTS = 7.0, 2.0
# Alice's written answer: `2*3 ... 2*2` would be an emphasis in Markdown and
# `<b>` a bold element in HTML; a grader and a student must both read it as typed.
ANSWER = ("A one-hot embedding of 2 tokens in 3 dimensions is a table of 2*3 weights, and each "
          "token's row is looked up alone; an encoder mixes the positions, through attention "
          "scores like a 2*2 matrix. <b>not bold</b>\n")
SEEN = "A one-hot embedding of 2 tokens in 3 dimensions"  # plain words of it, markup-free
SCORE = 1.5
COMMENT = "Right about the lookup table; say how attention mixes the positions."
BIN = Path(sys.executable).parent


def _need(ok, message):
    """Skip without `ok` on a developer's machine; in CI (which installs
    everything) fail instead."""
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _env(**extra):
    return {**os.environ, "PATH": str(BIN) + os.pathsep + os.environ["PATH"], **extra}


def _cli(*args, cwd):
    done = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"autograder {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Course:
    """The course folder, its Jupyter server, and calls on both."""

    def __init__(self, folder, root):
        self.folder, self.root = folder, root
        self.url = self.token = self.log = None

    def cli(self, *args):
        return _cli(*args, "--course", str(self.root), cwd=self.folder)

    def api(self, path):
        """GET on formgrader's REST API, authenticated with the token."""
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.load(reply)

    def export(self, name):
        out = self.folder / name
        self.cli("export", "--csv", str(out))
        with open(out, newline="", encoding="utf-8") as f:
            return {row["student_id"]: row for row in csv.DictReader(f)}

    def hand_grade(self, student):
        """(manual score, manual comment) of the written answer, from the gradebook."""
        with gradebook(self.root) as gb:
            (nb,) = gb.find_submission(ASSIGNMENT, student).notebooks
            (grade,) = [g for g in nb.grades if g.name == WRITTEN]
            (comment,) = [c for c in nb.comments if c.name == WRITTEN]
            return grade.manual_score, comment.manual_comment

    def feedback_page(self, student):
        return self.root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The graded course, and a Jupyter server started in it as the
    instructor starts one; the server is stopped (its whole process group)
    when the module is done, whatever happened."""
    _need(limits_in_force()["bwrap"], "bubblewrap (bwrap) is not installed: the grader needs it")
    folder = tmp_path_factory.mktemp("formgrader")
    c = Course(folder, folder / "course")
    c.cli("release", ASSIGNMENT, "--due", "2026-12-01T12:00")
    name = released_notebook(c.root, ASSIGNMENT).name
    answers = answer_cells(ASSIGNMENT)
    assert WRITTEN in answers
    make_submission(ASSIGNMENT, c.root / "submitted" / "alice" / ASSIGNMENT / name, {**answers, WRITTEN: ANSWER})
    make_submission(ASSIGNMENT, c.root / "submitted" / "bob" / ASSIGNMENT / name, {})
    c.cli("grade", ASSIGNMENT, "--jobs", "1")

    home = folder / "home"  # no user configuration of this machine reaches the server
    home.mkdir()
    env = {k: v for k, v in _env(HOME=str(home)).items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    c.token, port = secrets.token_hex(16), _free_port()
    c.url, c.log = f"http://127.0.0.1:{port}", folder / "jupyter.log"
    with open(c.log, "wb") as log:
        server = subprocess.Popen(
            [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", f"--ServerApp.token={c.token}",
             f"--port={port}", "--ServerApp.open_browser=False"],
            cwd=c.root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, f"jupyter lab exited ({server.returncode}):\n{c.log.read_text()[-4000:]}"
            try:
                c.api("/formgrader/api/status")
                break
            except OSError:
                assert time.monotonic() < deadline, f"jupyter lab did not answer:\n{c.log.read_text()[-4000:]}"
                time.sleep(0.3)
        yield c
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                break
            try:
                server.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def formgrader(browser, course):
    """A browser page logged in to the course's formgrader, as the instructor
    is after opening the link with the token. Requests that would leave the
    server are blocked (nbgrader's page asks a CDN for MathJax) and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.outside = []

    def route(r):
        if r.request.url.startswith(course.url):
            r.continue_()
        else:
            page.outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{course.url}/formgrader?token={course.token}", wait_until="networkidle")
    yield page
    context.close()


def _submission_url(page, course, student):
    """The link formgrader's Manual Grading list gives the student's notebook."""
    page.goto(f"{course.url}/formgrader/gradebook/{ASSIGNMENT}/{ASSIGNMENT}", wait_until="networkidle")
    page.wait_for_selector("#main-table td.name a", state="attached", timeout=30_000)
    (href,) = page.eval_on_selector_all(
        "#main-table td.name a.name-shown",
        f"els => els.filter(e => e.textContent.trim() === {student!r}).map(e => e.href)")
    assert f"{course.url}/formgrader/submissions/" in href
    return href


def _open_submission(page, course, student):
    page.goto(_submission_url(page, course, student), wait_until="networkidle")
    page.wait_for_function("() => window.formgrader && formgrader.grades.loaded && formgrader.comments.loaded",
                           timeout=30_000)
    return page.locator(f".nbgrader_cell:has(#{WRITTEN}) .text_cell_render")


@pytest.fixture(scope="module")
def hand_graded(formgrader, course):
    """Alice's written answer graded in formgrader's page, as a person does:
    a score typed in its box, Tab, a comment typed in its box, Tab (formgrader
    saves a box when it loses the focus); returns once the gradebook has both."""
    page = formgrader
    answer = _open_submission(page, course, "alice")
    shown = answer.inner_text()
    score = page.locator(f"input.score#{WRITTEN}")
    score.click()
    score.fill(str(SCORE))
    page.keyboard.press("Tab")
    comment = page.locator(f"textarea.comment#{WRITTEN}-comment")
    comment.click()
    comment.type(COMMENT)
    page.keyboard.press("Tab")
    # Once in CI the comment box lost the focus without formgrader saving it
    # (the score was saved). A person who sees no "saved" mark types the
    # comment again; a box only reports a change when its text differs from
    # what it held when it got the focus, so the retry empties it first.
    for _ in range(3):
        deadline = time.monotonic() + 15
        while course.hand_grade("alice") != (SCORE, COMMENT) and time.monotonic() < deadline:
            time.sleep(0.2)
        if course.hand_grade("alice") == (SCORE, COMMENT):
            break
        comment.click()
        comment.fill("")
        page.keyboard.press("Tab")
        comment.click()
        comment.type(COMMENT)
        page.keyboard.press("Tab")
    assert course.hand_grade("alice") == (SCORE, COMMENT), \
        f"formgrader did not save: the gradebook has {course.hand_grade('alice')}"
    return {"shown": shown}


def test_formgrader_finds_the_course(formgrader, course):
    page = formgrader
    page.goto(f"{course.url}/formgrader", wait_until="networkidle")
    assert page.url.startswith(f"{course.url}/formgrader/manage_assignments"), page.url
    page.wait_for_selector(f"#main-table td a:text-is('{ASSIGNMENT}')", timeout=30_000)
    (row,) = [r for r in page.eval_on_selector_all("#main-table tr", "els => els.map(e => e.innerText)")
              if r.startswith(ASSIGNMENT)]
    assert "2026-12-01 12:00:00 UTC" in row, row  # the due date given to `release`
    assert "Manage Assignments" in page.inner_text("body")
    (listed,) = course.api("/formgrader/api/assignments")
    assert listed["name"] == ASSIGNMENT and listed["num_submissions"] == 2
    assert listed["source_path"] == f"solutions/{ASSIGNMENT}", "formgrader did not read the course's nbgrader_config.py"
    assert "No nbgrader_config.py file found" not in course.log.read_text()


def test_automatic_grades_need_no_manual_grade(course):
    results = {s["student"]: s for s in course.api(f"/formgrader/api/submissions/{ASSIGNMENT}")}
    assert set(results) == {"alice", "bob"}
    assert (results["alice"]["code_score"], results["bob"]["code_score"]) == (AUTO_POINTS, 0.0)
    notebooks = course.api(f"/formgrader/api/submitted_notebooks/{ASSIGNMENT}/{ASSIGNMENT}")
    for notebook in notebooks:
        grades = course.api(f"/formgrader/api/grades?submission_id={notebook['id']}")
        tests = [g for g in grades if g["cell_type"] == "code"]
        assert len(tests) >= 2 and sum(g["max_score"] for g in tests) == AUTO_POINTS
        assert not [g["name"] for g in tests if g["needs_manual_grade"]], notebook["student"]
        assert all(g["auto_score"] is not None for g in tests)
        # Only the written answer waits for the instructor.
        assert [g["name"] for g in grades if g["needs_manual_grade"]] == [WRITTEN], notebook["student"]
        (written,) = [g for g in grades if g["name"] == WRITTEN]
        assert written["cell_type"] == "markdown" and written["max_score"] == WRITTEN_POINTS
        assert written["auto_score"] is None and written["manual_score"] is None
    # The same in the gradebook, through nbgrader's own API.
    with gradebook(course.root) as gb:
        for student in ("alice", "bob"):
            (nb,) = gb.find_submission(ASSIGNMENT, student).notebooks
            assert {g.name for g in nb.grades if g.needs_manual_grade} == {WRITTEN}


def test_hand_grade_entered_in_formgrader_is_exported(course, hand_graded):
    assert SEEN in hand_graded["shown"], hand_graded["shown"]  # the grader read alice's answer
    assert course.hand_grade("alice") == (SCORE, COMMENT)
    rows = course.export("grades.csv")
    alice, bob = rows["alice"], rows["bob"]
    assert float(alice["manual_score"]) == SCORE
    assert float(alice["auto_score"]) == AUTO_POINTS
    assert float(alice["raw_score"]) == AUTO_POINTS + SCORE
    assert float(alice["score"]) == AUTO_POINTS + SCORE  # no late penalty: nothing says she was late
    assert alice["needs_manual_grade"] == "False"
    assert f"{WRITTEN}: {COMMENT}" in alice["comments"]
    assert bob["needs_manual_grade"] == "True" and float(bob["raw_score"]) == 0.0 and bob["comments"] == ""


def test_regrading_keeps_the_hand_grade(course, hand_graded):
    before = course.export("before.csv")
    course.cli("grade", ASSIGNMENT, "--jobs", "1")
    assert course.hand_grade("alice") == (SCORE, COMMENT)
    after = course.export("after.csv")
    keys = ("raw_score", "score", "auto_score", "manual_score", "needs_manual_grade", "comments")
    assert {k: after["alice"][k] for k in keys} == {k: before["alice"][k] for k in keys}
    assert float(after["alice"]["manual_score"]) == SCORE and f"{WRITTEN}: {COMMENT}" in after["alice"]["comments"]
    # formgrader sees it too, and knows nothing is left to grade for alice.
    (notebook,) = [n for n in course.api(f"/formgrader/api/submitted_notebooks/{ASSIGNMENT}/{ASSIGNMENT}")
                   if n["student"] == "alice"]
    assert notebook["needs_manual_grade"] is False and notebook["score"] == AUTO_POINTS + SCORE
    (written,) = [g for g in course.api(f"/formgrader/api/grades?submission_id={notebook['id']}")
                  if g["name"] == WRITTEN]
    assert written["manual_score"] == SCORE and written["needs_manual_grade"] is False


def test_feedback_shows_the_hand_grade(course, hand_graded):
    course.cli("feedback", ASSIGNMENT)
    alice = course.feedback_page("alice").read_text(encoding="utf-8")
    assert "&lt;b&gt;not bold&lt;/b&gt;" in alice and "<b>not bold" not in alice
    assert "graded by hand: 1.5 / 2)" in alice  # beside the answer
    assert "Written answers, graded by hand: <strong>1.5 / 2</strong>" in alice  # in the summary
    assert "Automatic score: <strong>7 / 7</strong>" in alice
    assert "Total: <strong>8.5 / 9</strong>" in alice
    assert f"Instructor's comment:</strong> {COMMENT}" in alice
    bob = course.feedback_page("bob").read_text(encoding="utf-8")
    assert "Written answers, graded by hand: not graded yet (out of 2)" in bob
    assert "graded by hand: not graded yet (out of 2))" in bob
    assert "Total:" not in bob  # no total while a part is still to grade
    assert COMMENT not in bob


def test_feedback_page_works_offline(browser, course, hand_graded, tmp_path):
    page_path = course.feedback_page("alice")
    if not page_path.exists():
        course.cli("feedback", ASSIGNMENT)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    outside = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_timeout(500)
        assert outside == [], f"the page asked the network for {outside}"
        n_math = page.eval_on_selector_all("math", "els => els.length")
        assert n_math >= 1, "no MathML on the page"
        sized = page.eval_on_selector_all(
            "math", "els => els.filter(e => e.getBoundingClientRect().width > 0).length")
        assert sized == n_math, f"{n_math - sized} of {n_math} formulas are not drawn"
        body = page.inner_text("body")
        assert "<b>not bold</b>" in body and COMMENT in body and "8.5 / 9" in body
        shot = tmp_path / "feedback.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000, f"a nearly empty screenshot ({shot.stat().st_size} bytes)"
    finally:
        context.close()


# The answer as the student typed it, everywhere it is shown: HTML stays
# text, and so does what Markdown would take for emphasis (`2*3 ... 2*2`).

def test_formgrader_shows_the_written_answer_as_typed(formgrader, course):
    answer = _open_submission(formgrader, course, "alice")
    shown = answer.inner_text()
    assert "<b>not bold</b>" in shown, f"formgrader rendered alice's HTML: {answer.inner_html()}"
    assert "2*3 weights" in shown and "2*2 matrix" in shown, (
        f"formgrader rendered alice's Markdown: {answer.inner_html()}")
    assert answer.locator("b, strong, em, i").count() == 0, answer.inner_html()


def test_feedback_shows_the_written_answer_as_typed(course):
    course.cli("feedback", ASSIGNMENT)
    page = course.feedback_page("alice").read_text(encoding="utf-8")
    assert "2*3 weights" in page and "2*2 matrix" in page, (
        "the feedback page rendered alice's Markdown: "
        + page[page.find("one-hot embedding of 2"):][:300])
