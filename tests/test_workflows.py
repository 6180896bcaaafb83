"""The GitHub Actions workflows: the book is built with the README's command
and deployed with GitHub's own Pages actions on every push to main; CI runs
`.ci/run`. Every command they run exists here, and every action is pinned."""
import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
PINNED = re.compile(r"^actions/[\w-]+@v\d+\.\d+\.\d+$")  # GitHub's own, at an exact release


def _load(name):
    flow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    flow["on"] = flow.pop(True, flow.get("on"))  # YAML 1.1 reads the key `on` as true
    return flow


def _steps(flow):
    return [step for job in flow["jobs"].values() for step in job["steps"]]


def _make_targets():
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([\w.-]+):", text, re.M))


def _readme_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Three commands.*?```bash\n(.*?)```", text, re.S).group(1)
    return {line.split("#")[0].strip() for line in block.splitlines() if line.strip()}


def _check_commands(flow):
    """Each `run:` names only make targets of the Makefile and files of the repository."""
    targets = _make_targets()
    for step in _steps(flow):
        for command in filter(None, re.split(r"&&|\n", step.get("run", ""))):
            words = shlex.split(command)
            if "make" in words:
                assert all(t in targets for t in words[words.index("make") + 1:]), command
            for word in words:
                if word.startswith((".ci/", "benchmarks/", "tests/")):
                    assert (REPO / word).is_file(), f"{command}: no {word}"


def test_every_action_is_githubs_own_at_an_exact_release():
    for name in ("book.yml", "ci.yml"):
        uses = [step["uses"] for step in _steps(_load(name)) if "uses" in step]
        assert uses and all(PINNED.match(u) for u in uses), (name, uses)


def test_the_book_is_built_with_the_readme_command_and_deployed_on_push_to_main():
    flow = _load("book.yml")
    assert flow["on"]["push"]["branches"] == ["main"]
    runs = [step["run"] for step in _steps(flow) if "run" in step]
    assert "make book && make book-zh" in runs  # both editions: the Chinese lands in _build/html/zh
    assert {"make book", "make book-zh"} <= set(_readme_commands())
    uses = [step["uses"].split("@")[0] for step in _steps(flow) if "uses" in step]
    assert uses[-3:] == ["actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"]
    (upload,) = [s for s in _steps(flow) if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    # where `make book` writes the site (jupyter-book build . -> _build/html)
    assert upload["with"]["path"] == "_build/html" and "jupyter-book build ." in (REPO / "Makefile").read_text()
    assert flow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    _check_commands(flow)


def test_the_class_edition_is_published_when_the_repository_asks_for_it():
    flow = _load("book.yml")
    steps = {step.get("if"): step["run"] for step in _steps(flow) if "run" in step and "make book" in step["run"]}
    assert steps == {"vars.BOOK_EDITION != 'class'": "make book && make book-zh",
                     "vars.BOOK_EDITION == 'class'": "make book-class && mv _build/class/_build/html _build/html"}
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^book-class:.*\n\tEDGPT_EDITION=class .*--path-output _build/class$", makefile, re.M)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make book-class" in readme and "BOOK_EDITION" in readme


def test_ci_runs_the_projects_ci_script():
    flow = _load("ci.yml")
    assert "push" in flow["on"]
    runs = [step["run"] for step in _steps(flow) if "run" in step]
    assert any(".ci/run" in r for r in runs), runs
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "make test" in _readme_commands()
    _check_commands(flow)
