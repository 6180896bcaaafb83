"""The class report of one assignment, from its result records: the score
distribution, who handed in something unreadable or left items untouched
(apart from the mistakes, which they would drown), how many students made
each mistake, who was flagged, and pairs of near-identical answers.
Writes `reports/<assignment>.md`, `.png` and `-similar.md` in the course."""
import html
import re
import statistics
import textwrap
from pathlib import Path

from autograder.course import existing_course, released_notebook
from autograder.results import load
from autograder.trusted import NOT_IMPLEMENTED, UNREADABLE

SIMILARITY = 0.9  # answers at least this alike (after normalising) are reported as a pair


def mistake_of(message: str) -> str:
    """A failure message reduced to the mistake it names, so students who made
    the same one count together: no exception name, no call with its random
    arguments, numbers as #."""
    text = re.sub(r"^\w*(Error|Exception)\w*: ", "", message.strip())
    text = re.sub(r"^[\w.]+\([^)]*\)\s*:\s*", "", text)
    return re.sub(r"\d+(\.\d+)?", "#", text)[:160]


def classify(records: dict) -> dict:
    """{"unreadable": [students], "untouched": {student: [tests not attempted]},
    "mistakes": {(test, mistake): {students}}}."""
    unreadable = sorted(s for s, r in records.items() if any(f.startswith(UNREADABLE) for f in r["flags"]))
    untouched, mistakes = {}, {}
    for student, record in records.items():
        if student in unreadable:
            continue
        for test, result in record["tests"].items():
            if not result["messages"]:
                continue
            if result.get("item") in record.get("not_attempted", ()) or result["messages"][0] == NOT_IMPLEMENTED:
                untouched.setdefault(student, []).append(test)
                continue
            for message in result["messages"]:
                mistakes.setdefault((test, mistake_of(message)), set()).add(student)
    return {"unreadable": unreadable, "untouched": untouched, "mistakes": mistakes}


def similar_answers(root: Path, assignment: str, records: dict, threshold: float = SIMILARITY):
    """Pairs of students whose answers to one cell are near-identical once
    comments, docstrings, formatting and local names are set aside:
    ([(similarity, cell, student_a, student_b)], most alike first; answers).
    Answers left as released are not compared."""
    import nbformat

    from autograder.similarity import similar_pairs

    released = nbformat.read(released_notebook(root, assignment), as_version=4)
    stubs = [c.source for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")]
    answers = {s: r["answers"] for s, r in records.items()}
    return similar_pairs(answers, threshold, skip=stubs), answers


def _similarity_page(pairs, answers, threshold):
    """Markdown with each pair's two cells side by side (an HTML table, escaped)."""
    lines = [f"# Similar answers (similarity at least {threshold:g}, after normalising)", ""]
    if not pairs:
        lines.append("No pair of students above the threshold.")
    for score, cell, a, b in pairs:
        lines += [f"## `{cell}`: {a} and {b}, {score:.2f}", "", "<table><tr>",
                  f"<th>{html.escape(a)}</th><th>{html.escape(b)}</th></tr><tr>",
                  *[f"<td><pre>{html.escape(answers[s][cell])}</pre></td>" for s in (a, b)], "</tr></table>", ""]
    return "\n".join(lines) + "\n"


def _students(n):
    return f"{n} student{'s' * (n != 1)}"


def report(root: Path, assignment: str, similarity: float = SIMILARITY) -> dict:
    root = existing_course(root)
    records = load(root, assignment)
    found = classify(records)
    ranked = sorted(found["mistakes"].items(), key=lambda kv: (-len(kv[1]), kv[0]))
    scores = sorted(r["total"] for r in records.values())
    maximum = max((r["max"] for r in records.values()), default=0.0)
    flagged = sorted(s for s, r in records.items() if r["flags"])
    all_tests = {s: len(r["tests"]) for s, r in records.items()}
    lines = [f"# Report: {assignment}", "",
             f"{len(scores)} graded submissions, maximum {maximum:g} points (automatic part).", ""]
    if scores:
        lines += [f"Mean {statistics.mean(scores):.2f}, median {statistics.median(scores):g}, "
                  f"full marks {sum(s == maximum for s in scores)}, zero {sum(s == 0 for s in scores)}.", "",
                  "| score | students |", "|---:|---:|"]
        lines += [f"| {v:g} | {scores.count(v)} |" for v in sorted(set(scores), reverse=True)]
    lines += ["", f"Unreadable notebooks: {', '.join(found['unreadable']) or 'none'}.", "",
              "Not attempted (an answer cell still raises NotImplementedError):"]
    for student, tests in sorted(found["untouched"].items()):
        which = "every test" if len(tests) == all_tests[student] else ", ".join(f"`{t}`" for t in tests)
        lines.append(f"- {student}: {which}")
    if not found["untouched"]:
        lines.append("- none")
    lines += ["", f"Flagged for review: {', '.join(flagged) if flagged else 'none'}.", "",
              "Mistakes (students who attempted the item):", "",
              "| test | mistake | students |", "|---|---|---:|"]
    lines += [f"| `{test}` | {text.replace('|', '/')} | {len(who)} |" for (test, text), who in ranked]
    pairs, answers = similar_answers(root, assignment, records, similarity)
    lines += ["", f"Pairs of near-identical answers (similarity at least {similarity:g}): {len(pairs)}"
              + (f", listed with their code in reports/{assignment}-similar.md." if pairs else ".")]
    lines += [f"- `{cell}`: {a} and {b} ({score:.2f})" for score, cell, a, b in pairs]
    out_dir = root / "reports"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{assignment}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / f"{assignment}-similar.md").write_text(_similarity_page(pairs, answers, similarity), encoding="utf-8")
    plot(out_dir / f"{assignment}.png", assignment, scores, maximum, ranked, found)
    return {"text": "\n".join(lines), "markdown": out_dir / f"{assignment}.md", "plot": out_dir / f"{assignment}.png",
            "similar": pairs, "mistakes": {k: sorted(v) for k, v in found["mistakes"].items()},
            "unreadable": found["unreadable"], "untouched": found["untouched"],
            "totals": {s: r["total"] for s, r in records.items()}, "flagged": flagged}


def plot(path, assignment, scores, maximum, ranked, found, top=10):
    """Scores on the left; on the right, students per mistake (red), with the
    untouched and unreadable submissions apart (grey). Whole students on
    every count axis; labels wrapped, never cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    bars = [(f"{t}\n" + textwrap.fill(m, 48), len(w), "tab:red") for (t, m), w in ranked[:top]]
    bars += [("not attempted (some item)", len(found["untouched"]), "0.6"),
             ("not a readable notebook", len(found["unreadable"]), "0.35")]
    height = max(4.0, 0.55 * sum(label.count("\n") + 1 for label, _, _ in bars) + 1.2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [1, 1.5]})
    ax1.hist(scores, bins=[x - 0.5 for x in range(int(maximum) + 2)], color="tab:blue", edgecolor="white")
    ax1.set(xlabel="automatic score", ylabel="students", title=f"{assignment}: scores of {_students(len(scores))}")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    labels, counts, colours = zip(*bars[::-1])
    ax2.barh(range(len(bars)), counts, color=colours)
    ax2.set_yticks(range(len(bars)), labels, fontsize=8)
    ax2.set(xlabel="students", title="most frequent mistakes, and what was not graded")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlim(0, max([1, *counts]) + 0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
