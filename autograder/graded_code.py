"""One source for every graded name: the solution's answer cell.

A graded function or class is written once, in its assignment's answer cell in
`solutions/`. The book runs the same code from the package `edgpt` (which
Colab installs without `solutions/`), so `python -m autograder.publish` copies
each answer into the function of the same name in `edgpt/`, as d2l's `#@save`
copies a notebook's code into its package:

- the body of every function (or method) that holds a `### BEGIN SOLUTION`
  block replaces the body of edgpt's function of that name, markers removed;
- edgpt keeps its own `def` line, decorators and docstring, but the parameter
  names must be the solution's (edgpt may add defaults);
- a graded class in edgpt has exactly the methods of the solution's class.

Anything the package adds around a graded name (a key/value cache, a batched
decoder) lives in other names, which the tests check against the graded ones.
"""
import ast
import importlib
import inspect
import json
import pkgutil
import re
import textwrap

from autograder import REPO, SOURCE_DIR, UsageError
from autograder.exercise_translations import english

_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.M)


def answer_definitions():
    """[(assignment, top-level node, cell source)] for every graded function or
    class of every solution notebook, in notebook order."""
    out = []
    for path in sorted((REPO / SOURCE_DIR).glob("*/*.ipynb")):
        if english(path.parent.name):
            continue  # a Chinese release: the same code
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] != "code" or not meta.get("solution"):
                continue
            source = "".join(cell["source"])
            for node in ast.parse(source).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                    out.append((path.parent.name, node, source))
    return out


def _params(fn):
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]


def _body_lines(fn, lines):
    """(first, last) line numbers (1-based, inclusive) of `fn`'s body after its
    docstring; comments between the docstring (or signature) and the first
    statement belong to the body."""
    if ast.get_docstring(fn) is not None:
        return fn.body[0].end_lineno + 1, fn.end_lineno
    first = fn.body[0].lineno
    while lines[first - 2].strip().startswith("#"):
        first -= 1
    return first, fn.end_lineno


def _body(fn, source):
    lines = source.splitlines()
    first, last = _body_lines(fn, lines)
    return textwrap.dedent("\n".join(lines[first - 1:last])).rstrip("\n") + "\n"


def _graded_functions(node):
    """{qualified name: function node} of the functions of `node` that hold a
    solution block (a method's name is Class.method)."""
    fns = [node] if isinstance(node, ast.FunctionDef) else [
        n for n in node.body if isinstance(n, ast.FunctionDef)]
    return {(fn.name if fn is node else f"{node.name}.{fn.name}"): fn for fn in fns}


def _edgpt_module(name, params):
    """The edgpt module that defines `name` (a function whose parameter names
    are `params`, or a class)."""
    import edgpt

    found = []
    for info in pkgutil.iter_modules(edgpt.__path__):
        module = importlib.import_module(f"edgpt.{info.name}")
        obj = getattr(module, name, None)
        if obj is None or getattr(obj, "__module__", None) != module.__name__:
            continue
        if params is None or list(inspect.signature(obj).parameters) == params:
            found.append(module)
    if len(found) != 1:
        raise UsageError(f"graded name {name}: {len(found)} definitions in edgpt fit the solution's")
    return found[0]


def fresh_modules():
    """{path of an edgpt module: its text with every graded body copied from the solutions}."""
    texts = {}
    for assignment, node, cell_source in answer_definitions():
        is_class = isinstance(node, ast.ClassDef)
        module = _edgpt_module(node.name, None if is_class else _params(node))
        path = REPO / "edgpt" / f"{module.__name__.split('.')[-1]}.py"
        text = texts.get(path) or path.read_text(encoding="utf-8")
        theirs = next(n for n in ast.parse(text).body if getattr(n, "name", None) == node.name)
        ours_fns, theirs_fns = _graded_functions(node), _graded_functions(theirs)
        if is_class and set(ours_fns) != set(theirs_fns):
            raise UsageError(f"{path.relative_to(REPO)}: class {node.name} has methods {sorted(theirs_fns)}, "
                             f"the solution of {assignment} {sorted(ours_fns)}")
        # Replace bodies from the bottom up, so that earlier line numbers hold.
        lines = text.splitlines(keepends=True)
        for qualname in sorted(ours_fns, key=lambda q: -theirs_fns[q].lineno):
            ours, target = ours_fns[qualname], theirs_fns[qualname]
            if _params(ours) != _params(target):
                raise UsageError(f"{path.relative_to(REPO)}: {qualname}{_params(target)} does not take the "
                                 f"parameters of the solution of {assignment}, {_params(ours)}")
            body = _MARKER.sub("", _body(ours, cell_source))
            first, last = _body_lines(target, text.splitlines())
            indent = re.match(r"[ \t]*", lines[target.body[0].lineno - 1]).group()
            lines[first - 1:last] = [textwrap.indent(body, indent)]
        text = "".join(lines)
        texts[path] = text
    return texts
