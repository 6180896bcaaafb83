"""Timings in the book: measured one way (edgpt.median_ms), printed, never
asserted on, so that a loaded machine cannot fail the build."""
import ast
import json
from pathlib import Path

import pytest
import torch

from edgpt import median_ms

REPO = Path(__file__).resolve().parent.parent
CLOCKS = ("perf_counter", "time.time", "timeit", "monotonic")


def _code(page):
    nb = json.loads(page.read_text(encoding="utf-8"))
    return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
                       and "edgpt_generated" not in c.get("metadata", {}))


def _bound(target):
    """The names a target binds: `d[k] = ...` and `d.k = ...` bind d, not k."""
    while isinstance(target, (ast.Subscript, ast.Attribute, ast.Starred)):
        target = target.value
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _bound(element)


def _targets(node):
    for target in getattr(node, "targets", None) or [node.target]:
        yield from _bound(target)


def _names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def timing_asserts(source):
    """The line numbers of the `assert`s in `source` that read a value derived
    from a call of median_ms (followed through assignments and loops)."""
    tree = ast.parse(source)
    bindings = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For))]
    tainted = set()
    while True:
        before = len(tainted)
        for node in bindings:
            value = node.iter if isinstance(node, ast.For) else node.value
            if value is not None and ("median_ms" in _names(value) or _names(value) & tainted):
                tainted |= set(_targets(node))
        if len(tainted) == before:
            break
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert) and _names(n.test) & tainted]


def test_the_check_finds_an_assert_on_a_timing():
    hostile = ("ms = median_ms({'a': f, 'b': g})\n"
               "speed = {}\n"
               "for n in (1, 2):\n"
               "    speed[n] = ms['a'] / ms['b']\n"
               "ratio = speed[2]\n"
               "assert ratio > 2\n"
               "assert len(ms) == 2\n"
               "total, count = sum(speed.values()), 2\n"
               "assert count == 2 and n == 2\n"
               "other = 3\n"
               "assert other == 3\n")
    assert timing_asserts(hostile) == [6, 7, 9]  # `count` shares a line with `total`


@pytest.mark.parametrize("page", sorted((REPO / "book").glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_page_asserts_on_a_timing_or_times_by_itself(page):
    source = _code(page)
    assert not [c for c in CLOCKS if c in source], f"{page.name}: time with edgpt.median_ms"
    assert not timing_asserts(source), f"{page.name}: asserts on a timing at lines {timing_asserts(source)}"


def test_median_ms_takes_turns_with_the_thread_count_fixed():
    calls, threads = [], []

    def variant(name):
        return lambda: (calls.append(name), threads.append(torch.get_num_threads()))

    before = torch.get_num_threads()
    ms = median_ms({"a": variant("a"), "b": variant("b")}, rounds=3, threads=1)
    assert calls == ["a", "b"] * 4  # one warm-up each, then three rounds in turn
    assert set(threads) == {1} and torch.get_num_threads() == before
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
