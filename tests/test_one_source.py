"""One source per graded name, one training loop.

Every graded function and class is written in its assignment's solution and
copied into `edgpt` by `python -m autograder.publish` (autograder.graded_code);
the grading tests hand in edgpt's versions as answers (grading.book_answers,
the `book_code_from_edgpt` entry of every catalog). Every model of the book is
trained by `edgpt.train.train`."""
import json
import re
import shutil

import pytest

from autograder import REPO, SOURCE_DIR, UsageError, graded_code
from edgpt.utils import GRADED


@pytest.fixture
def copy_of_course(tmp_path, monkeypatch):
    """The solutions and edgpt's sources in a scratch folder that graded_code reads."""
    shutil.copytree(REPO / SOURCE_DIR, tmp_path / SOURCE_DIR)
    shutil.copytree(REPO / "edgpt", tmp_path / "edgpt", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(graded_code, "REPO", tmp_path)
    return tmp_path


def test_edgpt_holds_each_graded_body_as_its_solution_writes_it():
    stale = {path.name for path, text in graded_code.fresh_modules().items()
             if path.read_text(encoding="utf-8") != text}
    assert not stale, f"run `python -m autograder.publish`: graded code in {sorted(stale)} differs from the solutions"


def test_every_graded_name_is_found_once():
    found = sorted(node.name for _, node, _ in graded_code.answer_definitions())
    assert found == sorted(name for names in GRADED.values() for name in names)


def test_an_edit_to_a_graded_body_in_edgpt_is_undone_by_publish(copy_of_course):
    gpt = copy_of_course / "edgpt" / "gpt.py"
    text = gpt.read_text(encoding="utf-8")
    edited = text.replace("return torch.ones(T, T, dtype=torch.bool).tril()",
                          "return torch.ones(T, T, dtype=torch.bool).triu()")
    assert edited != text
    gpt.write_text(edited, encoding="utf-8")
    fresh = graded_code.fresh_modules()
    assert fresh[gpt] == text
    unchanged = {p.name for p, t in fresh.items() if p != gpt and p.read_text(encoding="utf-8") != t}
    assert not unchanged


def test_an_edit_to_a_solution_reaches_edgpt(copy_of_course):
    path = copy_of_course / SOURCE_DIR / "causal_masking" / "causal_masking.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "causal_mask"]
    cell["source"] = re.sub(r"\.tril\(\)", ".tril(diagonal=0)", "".join(cell["source"]))
    path.write_text(json.dumps(nb), encoding="utf-8")
    fresh = graded_code.fresh_modules()[copy_of_course / "edgpt" / "gpt.py"]
    assert "return torch.ones(T, T, dtype=torch.bool).tril(diagonal=0)" in fresh


@pytest.mark.parametrize("edit, words", [
    (("    def forward(self, x):\n        B, T, D", "    def forward(self, inputs):\n        B, T, D"),
     "does not take the parameters"),
    (("class CausalSelfAttention(nn.Module):", "class CausalSelfAttention(nn.Module):\n"
      "    def extra(self):\n        return 1\n"), "has methods"),
    (("def gpt2_num_parameters(", "def gpt2_parameter_count("), "0 definitions"),
])
def test_edgpt_that_does_not_fit_its_solution_is_an_error(copy_of_course, monkeypatch, edit, words):
    # The module search imports the installed edgpt: give it the edited file.
    import importlib
    import sys

    gpt = copy_of_course / "edgpt" / "gpt.py"
    gpt.write_text(gpt.read_text(encoding="utf-8").replace(*edit), encoding="utf-8")
    monkeypatch.syspath_prepend(str(copy_of_course))
    for name in [m for m in sys.modules if m == "edgpt" or m.startswith("edgpt.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    with pytest.raises(UsageError, match=words):
        graded_code.fresh_modules()


def test_one_training_loop():
    # Only edgpt/train.py builds an optimiser and steps it; every book page
    # and every other module trains through edgpt.train.train.
    optimiser = re.compile(r"torch\.optim\.|\.step\(\)")
    sources = {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8") for p in (REPO / "edgpt").glob("*.py")}
    # The one exception: a cell tagged `reproduces-note` (the misconceptions page
    # runs note 001's own `train_epoch`, with its bug, to show what it returns).
    for page in (REPO / "book").glob("*.ipynb"):
        cells = json.loads(page.read_text(encoding="utf-8"))["cells"]
        sources[page.relative_to(REPO).as_posix()] = "\n".join(
            "".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and "reproduces-note" not in c["metadata"].get("tags", []))
    loops = sorted(name for name, text in sources.items() if optimiser.search(text))
    assert loops == ["edgpt/train.py"]


def test_the_training_loop_takes_the_loss_a_model_defines():
    import torch
    from torch import nn

    from edgpt.train import train

    class Mean(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def loss(self, x):
            return ((self.w - x) ** 2).mean()

    model = Mean()
    losses = train(model, lambda step: (torch.full((8,), 3.0),), 200, lr=0.1)
    assert losses[0] == pytest.approx(9.0) and losses[-1] < 1e-3 and abs(model.w.item() - 3.0) < 0.05
    with pytest.raises(ValueError, match="schedule"):
        train(model, lambda step: (torch.ones(1),), 1, schedule="exponential")
    _, evaluations = train(model, lambda step: (torch.ones(1),), 5, evaluate=lambda m: m.w.item(), eval_every=2)
    assert [step for step, _ in evaluations] == [0, 2, 4]
