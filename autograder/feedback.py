"""Feedback pages: one self-contained HTML page per graded student,
`feedback/<student>/<assignment>/<notebook>.html`, built from the result
record (`autograder.results`) and what the instructor entered in formgrader.

Not nbgrader's `generate_feedback`, whose pages show the hidden tests: each
test cell shows its released (visible) source and its verdict. Everything the
student wrote or the grader said is shown as text (HTML and Markdown
escaped); math is MathML, which browsers draw themselves, so a page read
offline, or uploaded alone to a learning platform, needs nothing else.
"""
from pathlib import Path

from autograder import SOURCE_DIR
from autograder.course import existing_course, released_notebook
from autograder.exercise_translations import LANGUAGE, language_of
from autograder.markdown import literal, text, with_mathml
from autograder.results import assign_late_penalties, hand_grades, load
from autograder.trusted import COPY_FLAG

TEMPLATES = Path(__file__).parent / "templates"

# The page's words, in the language of the release the student did (the
# instructor's source notebook says which: autograder/exercise_translations.py).
WORDS = {
    "en": {
        "title": "Feedback: {assignment}, {student}", "auto": "Automatic score",
        "written": "Written answers, graded by hand", "not_yet": "not graded yet (out of {max})",
        "penalty": "Late penalty: **{penalty}** points", "override": "your instructor set the score to {score}",
        "total": "Total", "after_penalty": " (after the late penalty)", "handed_in": "Handed in {when}", "colon": ": ",
        "due": ", due {when}", "note": "Note", "table": "| test | score | message |", "passed": "passed",
        "points": "{score} / {max} points", "answer": "**Your answer** (`{grade_id}`, graded by hand: {score})",
        "comment": "**Instructor's comment:**",
    },
    "zh_CN": {
        "title": "反馈：{assignment}，{student}", "auto": "自动评分",
        "written": "书面回答（人工评分）", "not_yet": "尚未评分（满分 {max}）",
        "penalty": "迟交扣分：**{penalty}** 分", "override": "老师把这一项的分数改为 {score}",
        "total": "总分", "after_penalty": "（已扣除迟交分）", "handed_in": "提交时间 {when}", "colon": "：",
        "due": "，截止时间 {when}", "note": "备注", "table": "| 测试 | 得分 | 信息 |", "passed": "通过",
        "points": "{score} / {max} 分", "answer": "**你的回答**（`{grade_id}`，人工评分：{score}）",
        "comment": "**老师的评语：**",
    },
}
# The grader's own words in a test's messages or a flag, and their Chinese:
# (English pattern, Chinese with the pattern's groups). Messages a Chinese
# release's tests write are Chinese already; Python's exception names stay.
GRADER_PHRASES = [
    (r"NotImplementedError: not implemented yet \(the answer cell still raises NotImplementedError\)",
     r"NotImplementedError：还没有实现（答案单元格仍然抛出 NotImplementedError）"),
    (r"not run: (.*)", r"未运行：\1"),
    (r"stopped: the submission used up its time budget of (\S+) s", r"已停止：这份作业用完了 \1 秒的时间预算"),
    (r"timed out: the code did not finish in the time allowed", r"超时：代码没有在规定时间内运行完"),
    (r"the kernel was stopped: it (.*)", r"内核被停止了：\1"),
    (r"(\S+) modified the input in place \(tensor argument (\d+)\): leave its inputs unchanged",
     r"\1 原地修改了输入（第 \2 个张量参数）：不要改动传入的参数"),
    (r"(\S+) uses the course's implementation instead of your own", r"\1 用的是课程自带的实现，而不是你自己写的"),
    (r"the file is not a readable notebook (.*)", r"这个文件不是可以读取的笔记本 \1"),
    (r"the notebook has no cells", r"笔记本里没有单元格"),
    (r"answer cell `([^`]*)` is missing", r"缺少答案单元格 `\1`"),
    (r"locked cell `([^`]*)` was edited; the released version was used", r"锁定的单元格 `\1` 被改动过；批改时用的是发布时的版本"),
    (r"unknown cell `([^`]*)` was ignored", r"未知的单元格 `\1` 被忽略了"),
    (r"answer cell `([^`]*)` appears more than once; the first was graded", r"答案单元格 `\1` 出现了不止一次；批改的是第一个"),
    (r"written answer `([^`]*)` appears more than once; the first is graded", r"书面回答 `\1` 出现了不止一次；批改的是第一个"),
]


def in_language(message, language):
    """`message` with the grader's own words put in `language` (the rest as it is)."""
    import re

    if language == "en":
        return message
    for english, chinese in GRADER_PHRASES:
        message = re.sub(english, chinese, message)
    return message


def release_language(root, assignment):
    """The language of `assignment`'s release, as its instructor's notebook records it."""
    import json

    (source,) = (Path(root) / SOURCE_DIR / assignment).glob("*.ipynb")
    return language_of(json.loads(source.read_text(encoding="utf-8")))


def feedback(root: Path, assignment: str) -> dict:
    """Write every graded student's page; returns {student: path}."""
    import nbformat

    root = existing_course(root)
    released_path = released_notebook(root, assignment)
    records = load(root, assignment)
    for student in records:  # hand grading may have changed the score a penalty takes
        assign_late_penalties(root, assignment, student)
    hand = hand_grades(root, assignment)
    language = release_language(root, assignment)
    pages = {}
    for student, record in records.items():
        nb = nbformat.read(released_path, as_version=4)
        title = WORDS[language]["title"].format(assignment=assignment, student=student)
        page = render(nb, record, hand.get(student, {}), title, language)
        out = root / "feedback" / student / assignment / released_path.with_suffix(".html").name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        pages[student] = out
    return pages


def render(nb, record, hand, title, language="en") -> str:
    """The released notebook `nb` as the student's page: a summary, the
    student's answers in place, each test's verdict under it."""
    import nbformat
    from nbconvert import HTMLExporter

    cells = [nbformat.v4.new_markdown_cell(summary(record, hand, title, language))]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if cell.cell_type == "code":
            cell.outputs = []
        if cell.cell_type == "markdown" and not (meta.get("solution") and grade_id in record["written"]):
            cell.source = with_mathml(cell.source)  # the course's own text
        if meta.get("solution") and cell.cell_type == "code":
            cell.source = record["answers"].get(grade_id, "")
        elif meta.get("solution") and grade_id in record["written"]:
            cell.source = written_block(grade_id, record["written"][grade_id], hand, language)
        elif meta.get("grade") and cell.cell_type == "code" and grade_id in record["tests"]:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verdict(record["tests"][grade_id], language))]
        cells.append(cell)
    nb.cells = cells
    exporter = HTMLExporter(template_name="feedback", extra_template_basedirs=[str(TEMPLATES)],
                            language_code="zh" if language == LANGUAGE else "en")  # ISO 639-1 only
    page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return page


def _when(iso: str) -> str:
    import datetime as dt

    return f"{dt.datetime.fromisoformat(iso):%Y-%m-%d %H:%M} UTC"


def verdict(test, language="en") -> str:
    words, messages = WORDS[language], [in_language(m, language) for m in test["messages"]]
    head = words["points"].format(score=f"{test['score']:g}", max=f"{test['max']:g}")
    return head + (f"{words['colon']}{words['passed']}\n" if not messages else "\n" + "\n".join(messages) + "\n")


def summary(record, hand, title, language="en") -> str:
    """The page's first cell: the automatic total and the hand-graded points,
    apart and together, lateness, flags, and every test in a table."""
    words = WORDS[language]
    auto, auto_max = record["total"], record["max"]
    written_max = sum(w["max"] for w in record["written"].values())
    manual = hand.get("manual")
    lines = [f"# {text(title)}", "", f"- {words['auto']}: **{auto:g} / {auto_max:g}**"]
    if record["written"]:
        lines.append(f"- {words['written']}: **{manual:g} / {written_max:g}**" if manual is not None
                     else f"- {words['written']}: {words['not_yet'].format(max=f'{written_max:g}')}")
    penalty = hand.get("penalty") or 0.0
    if penalty:
        lines.append(f"- {words['penalty'].format(penalty=f'{penalty:g}')}")
    for test, score in hand.get("overrides", {}).items():
        lines.append(f"- `{test}`: {words['override'].format(score=f'{score:g}')}")
    if hand and (manual is not None or not record["written"]):
        total = hand["score"] - penalty  # nbgrader's own sum: a score set by hand wins
        lines.append(f"- {words['total']}: **{max(0.0, total):g} / {auto_max + written_max:g}**"
                     + (words["after_penalty"] if penalty else ""))
    if record.get("timestamp"):
        lines.append(f"- {words['handed_in'].format(when=_when(record['timestamp']))}"
                     + (words["due"].format(when=_when(record["duedate"])) if record.get("duedate") else ""))
    # A flag that asks the instructor to review an answer is the instructor's.
    lines += [f"- {words['note']}: {text(in_language(flag, language))}" for flag in record["flags"]
              if COPY_FLAG not in flag]
    lines += ["", words["table"], "|---|---|---|"]
    for grade_id, test in record["tests"].items():
        message = "<br>".join(text(in_language(m, language)) for m in test["messages"]) or words["passed"]
        lines.append(f"| `{grade_id}` | {test['score']:g} / {test['max']:g} | {message} |")
    return "\n".join(lines)


def written_block(grade_id, written, hand, language="en") -> str:
    """A written answer as the student wrote it (escaped), with the score and
    comment the instructor gave in formgrader."""
    words, given = WORDS[language], hand.get("written", {}).get(grade_id)
    score = (f"{given:g} / {written['max']:g}" if given is not None
             else words["not_yet"].format(max=f"{written['max']:g}"))
    lines = [words["answer"].format(grade_id=grade_id, score=score), "", literal(written["text"])]
    comment = hand.get("comments", {}).get(grade_id)
    if comment:
        lines += ["", f"{words['comment']} {text(comment)}"]
    return "\n".join(lines)
