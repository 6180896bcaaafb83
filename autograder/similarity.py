"""Answers compared as code, not as text: comments, docstrings, formatting and
the names of arguments and local variables do not count.

`normalise` turns a cell into a canonical form; `similar_pairs` compares the
forms of every pair of students token by token (difflib's ratio, 0 to 1) and
lists the pairs whose answers to one cell are at least that similar.
"""
import ast
import difflib
import io
import itertools
import tokenize


class _Canonical(ast.NodeTransformer):
    """Arguments and local names of each function renamed in order of first
    use (v0, v1, ...); docstrings dropped."""

    def __init__(self):
        self.scopes = []

    def _body(self, node):
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node):
        self._body(node)
        names = {}
        local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.scopes.append((names, local))
        for a in ast.walk(node.args):
            if isinstance(a, ast.arg):
                a.arg = self._rename(a.arg)
        self.generic_visit(node)
        self.scopes.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self._body(node)
        self.generic_visit(node)
        return node

    def visit_Module(self, node):
        self._body(node)
        self.generic_visit(node)
        return node

    def _rename(self, name):
        for names, local in reversed(self.scopes):
            if name in local:
                return names.setdefault(name, f"v{len(names)}")
        return name

    def visit_Name(self, node):
        node.id = self._rename(node.id)
        return node


def normalise(code: str) -> str:
    """The canonical form of a cell (its tokens, if it does not parse)."""
    try:
        tree = _Canonical().visit(ast.parse(code))
        return ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError):
        return " ".join(tokens(code))


def tokens(code: str) -> list:
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline)
                if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                  tokenize.DEDENT, tokenize.ENDMARKER)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code.split()


def similar_pairs(answers: dict, threshold: float, skip=()) -> list:
    """`answers`: {student: {cell: code}}. Returns [(similarity, cell, a, b)],
    most similar first, for each pair whose answers to a cell are at least
    `threshold` alike. Cells whose normalised code is in `skip` (the released
    stub) are left out: untouched answers are alike by nature."""
    skip = {normalise(c) for c in skip}
    forms = {}
    for student, cells in answers.items():
        for cell, code in cells.items():
            form = normalise(code)
            if form not in skip and code.strip():
                forms.setdefault(cell, {})[student] = form
    found = []
    for cell, by_student in forms.items():
        for (a, fa), (b, fb) in itertools.combinations(sorted(by_student.items()), 2):
            ta, tb = tokens(fa), tokens(fb)
            quick = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
            if fa != fb and quick.real_quick_ratio() < threshold:
                continue
            score = 1.0 if fa == fb else quick.ratio()
            if score >= threshold:
                found.append((score, cell, a, b))
    return sorted(found, key=lambda x: (-x[0], x[1], x[2], x[3]))
