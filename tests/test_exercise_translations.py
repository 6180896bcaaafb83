"""The Chinese releases of the assignments (autograder/exercise_translations.py):
the same code as the English ones, every word a student reads in Chinese, and
a catalog that names what is stale when the English changes."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from autograder import RELEASE_DIR, REPO, SOURCE_DIR
from autograder import exercise_translations as ex

CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH = ex.english_assignments()


def _cells(folder, assignment):
    (path,) = (REPO / folder / assignment).glob("*.ipynb")
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _src(cell):
    return "".join(cell["source"])


def test_markdown_blocks_give_the_text_back_and_keep_code_math_and_markers():
    text = "Intro line\nsecond line\n\n### BEGIN SOLUTION\nModel answer.\n\n\n```python\nx = 1\n\ny = 2\n```\n$$a = b$$\n"
    blocks = ex.markdown_blocks(text)
    assert "".join(sep + block for sep, block, _ in blocks) == text
    assert [(b, ok) for _, b, ok in blocks if b] == [
        ("Intro line\nsecond line", True), ("### BEGIN SOLUTION", False), ("Model answer.", True),
        ("```python\nx = 1\n\ny = 2\n```\n$$a = b$$", False)]
    for assignment in ENGLISH:
        for cell in _cells(SOURCE_DIR, assignment):
            if cell["cell_type"] == "markdown":
                assert "".join(s + b for s, b, _ in ex.markdown_blocks(_src(cell))) == _src(cell)


def test_code_units_are_messages_and_comments_never_the_solution_or_code():
    code = ('def f(x):\n'
            '    """Add one."""\n'
            '    ### BEGIN SOLUTION\n'
            '    raise ValueError("hidden words here")  # the answer\n'
            '    ### END SOLUTION\n'
            '# check it\n'
            'assert f(1) == 2, (f"f(1) should be 2, "\n'
            '                   f"got {f(1)!r}")\n'
            'mode = "relu"\n')
    assert [(c, t) for _, _, c, t in ex.code_units(code)] == [
        ("string", "'Add one.'"), ("comment", "check it"), ("string", "f'f(1) should be 2, got {f(1)!r}'")]


@pytest.mark.parametrize("english, chinese, problem", [
    ("f'got {x!r}'", "f'得到 {x!r}'", None),
    ("'plain words'", "'普通的话'", None),
    ("f'got {x!r}'", "f'得到 {x}'", "placeholders differ"),
    ("f'got {x}'", "'得到 x'", "a string where the English is a f-string"),
    ("'a {} b'", "'甲 乙'", "placeholders differ"),
    ("'it's'", "'它'的'", "not a Python string literal"),
])
def test_a_translated_literal_keeps_its_kind_and_placeholders(english, chinese, problem):
    found = ex.string_problems(english, chinese)
    assert (found == []) if problem is None else any(problem in f for f in found), found


@pytest.mark.parametrize("assignment", ENGLISH)
def test_the_chinese_release_runs_the_same_code(assignment):
    english, chinese = _cells(SOURCE_DIR, assignment), _cells(SOURCE_DIR, ex.chinese(assignment))
    assert len(english) == len(chinese)
    for a, b in zip(english, chinese):
        assert (a["cell_type"], a["metadata"].get("nbgrader")) == (b["cell_type"], b["metadata"].get("nbgrader"))
        if a["cell_type"] == "code" and not ex._generated(a):
            # Only strings differ: the same statements, names, numbers.
            assert ex.skeleton(_src(a)) == ex.skeleton(_src(b)), a["metadata"].get("nbgrader", {}).get("grade_id")
            for block in re.findall(r"### BEGIN SOLUTION.*?### END SOLUTION", _src(a), re.S):
                assert block in _src(b), "the solution is never translated"


@pytest.mark.parametrize("assignment", ENGLISH)
def test_a_student_of_the_chinese_release_reads_chinese(assignment):
    kept_as_data = set(ex._translations(assignment).values())
    for cell in _cells(RELEASE_DIR, ex.chinese(assignment)):
        text = _src(cell)
        if cell["cell_type"] == "markdown":
            assert CJK.search(text), text[:80]
        code = cell["cell_type"] == "code" and not ex._generated(cell)  # publish writes the install cell
        for _, _, context, unit in ex.code_units(text) if code else []:
            # Every message, print and comment is Chinese, or kept as data.
            assert CJK.search(unit) or unit in kept_as_data, unit


def test_a_changed_english_unit_is_named_stale(tmp_path, monkeypatch):
    assert ex.stale_units() == []
    source = ex.source_path("feed_forward")
    nb = json.loads(source.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_ffn_visible")
    cell["source"] = _src(cell).replace("should be an nn.Linear", "must be an nn.Linear", 1)
    changed = tmp_path / "feed_forward.ipynb"
    changed.write_text(json.dumps(nb), encoding="utf-8")
    monkeypatch.setattr(ex, "source_path", lambda a: changed if a == "feed_forward" else source.parents[1] / a / f"{a}.ipynb")
    stale = ex.stale_units()
    assert [(a, reason, words) for a, _, reason, words in stale] == [
        ("feed_forward", "no translation (string)", "'self.linear1 must be an nn.Linear'")]


def test_check_and_publish_see_a_missing_translation(tmp_path, monkeypatch):
    from autograder.translations import _read, _write

    catalogs = tmp_path / "exercises"
    shutil.copytree(ex.CATALOGS, catalogs)
    catalog = _read(catalogs / "feed_forward.po", locale="zh_CN")
    unit = next(m for m in catalog if m.id == "'the biases are not counted'")
    unit.flags.add("fuzzy")
    _write(catalog, catalogs / "feed_forward.po")
    monkeypatch.setattr(ex, "CATALOGS", catalogs)
    assert [(a, r, w) for a, _, r, w in ex.stale_units()] == [
        ("feed_forward", "the English changed (fuzzy) (string)", "'the biases are not counted'")]
    with pytest.raises(ex.UsageError, match="1 units untranslated or fuzzy, the first a string: "
                                            "\"'the biases are not counted'\""):
        ex.translated(json.loads(ex.source_path("feed_forward").read_text()), "feed_forward")


def test_validate_answers_in_the_language_of_the_release(tmp_path):
    notebook = tmp_path / "feed_forward.ipynb"
    notebook.write_bytes((REPO / RELEASE_DIR / "feed_forward_zh" / "feed_forward.ipynb").read_bytes())
    done = subprocess.run([sys.executable, "-m", "autograder", "validate", str(notebook)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "2 个问题" in done.stdout, done.stdout
    assert done.stdout.count("未通过：NotImplementedError：还没有实现") == 2, done.stdout


def test_the_grader_words_are_put_in_chinese():
    from autograder.feedback import in_language
    from autograder.trusted import NOT_IMPLEMENTED

    assert in_language(NOT_IMPLEMENTED, "zh_CN") == "NotImplementedError：还没有实现（答案单元格仍然抛出 NotImplementedError）"
    assert in_language("not run: timed out: the code did not finish in the time allowed", "zh_CN") == (
        "未运行：超时：代码没有在规定时间内运行完")
    assert in_language(NOT_IMPLEMENTED, "en") == NOT_IMPLEMENTED


@pytest.mark.slow
def test_a_chinese_release_is_graded_and_its_feedback_is_chinese(tmp_path):
    # The instructor's cycle through the CLI, for the Chinese release.
    from grading import answer_cells, make_submission, mutate

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    run("release", "feed_forward_zh", "--course", "course")
    answers = answer_cells("feed_forward_zh", kinds=("code",))
    answers["ffn_num_parameters"] = mutate(answers["ffn_num_parameters"], [(" + (d_ff * d_model + d_model)", "")])
    make_submission("feed_forward_zh", tmp_path / "course/submitted/li/feed_forward_zh/feed_forward.ipynb", answers)
    run("grade", "feed_forward_zh", "--jobs", "1", "--json", "g.json")
    tests = json.loads((tmp_path / "g.json").read_text())["li"]["tests"]
    assert {t: r["score"] for t, r in tests.items()} == {
        "test_ffn_visible": 1.0, "test_ffn_hidden": 3.0,
        "test_ffn_num_parameters_visible": 0.0, "test_ffn_num_parameters_hidden": 0.0}
    run("feedback", "feed_forward_zh")
    page = (tmp_path / "course/feedback/li/feed_forward_zh/feed_forward.html").read_text(encoding="utf-8")
    assert '<html lang="zh">' in page
    for words in ("反馈：feed_forward_zh，li", "自动评分", "只算了 linear1：linear2 也有参数", "3 / 3 分：通过"):
        assert words in page, words
    assert "Automatic score" not in page and "points" not in page
