"""Chinese releases of the assignments: the same graded names and tests, the text in Chinese.

An assignment `a` has one source, `solutions/a/a.ipynb`. Its Chinese twin,
the assignment `a_zh` (`solutions/a_zh/a.ipynb`, released as
`exercises/a_zh/a.ipynb`), is generated from it and from the catalog
`locales/zh_CN/LC_MESSAGES/exercises/a.po` by `python -m autograder.publish`,
which also reports it stale (`--check`) when either changed. A catalog holds
three kinds of text units (the `msgctxt` says which):

- `markdown`: a block of a Markdown cell (the blocks are separated by blank
  lines; fenced code and display math are kept as they are);
- `comment`: a comment of a code cell, without its `# `;
- `string`: a string literal of a code cell that holds words (a space and a
  letter), as Python writes it (`ast.unparse`: one literal, `f"..."` for an
  f-string): the test messages, prints and docstrings. Its translation is a
  literal too, with the same `{placeholders}`; one that must not change
  (data a test feeds the student's code) is translated by itself.

What is never translated: the code between `### BEGIN SOLUTION` and
`### END SOLUTION` (the grader compares answers with it), and every code
token that is not a string or a comment, so that both releases run the same
tests (tests/test_exercise_translations.py compares their syntax trees, and
every catalog of wrong implementations is graded on both with the same
scores). `python -m autograder.translations update|check|lint` covers these
catalogs along with the book's.
"""
import ast
import copy
import io
import json
import re
import tempfile
import tokenize
from pathlib import Path

from autograder import REPO, SOURCE_DIR, UsageError
from autograder.translations import LANGUAGE, _read, _write, markup_problems, merge, stale_reason

SUFFIX = "_zh"  # the Chinese release of assignment `a` is the assignment `a_zh`
CATALOGS = REPO / "locales" / LANGUAGE / "LC_MESSAGES" / "exercises"
# What nbgrader leaves in an answer cell of the Chinese release (its English
# defaults: "# YOUR CODE HERE" and "YOUR ANSWER HERE").
CODE_STUB = "# 在这里写你的代码\nraise NotImplementedError()"
TEXT_STUB = "在这里写下你的回答"

_SOLUTION_BLOCK = re.compile(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*$", re.S | re.M)
_MARKER = re.compile(r"^#+ *(BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")
# Text with words: a space and a letter, or hyphenated words ("self-attention").
_WORDS = re.compile(r"[A-Za-z].*\s|\s.*[A-Za-z]|^[A-Za-z]+(-[A-Za-z]+)+$", re.S)


def chinese(assignment):
    return assignment + SUFFIX


def english(assignment):
    """The assignment a Chinese release translates, or None for an English one."""
    return assignment[: -len(SUFFIX)] if assignment.endswith(SUFFIX) else None


def language_of(nb):
    """The language a notebook (a release, or its instructor's source) records
    it is in: LANGUAGE for a Chinese release, "en" for the others."""
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    edgpt = meta.get("edgpt") if isinstance(meta.get("edgpt"), dict) else {}
    return edgpt.get("language", "en")


def catalog_path(assignment):
    return CATALOGS / f"{assignment}.po"


def _shown(path):
    """`path` as a message names it: relative to the repository when inside it."""
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def source_path(assignment):
    (path,) = (REPO / SOURCE_DIR / assignment).glob("*.ipynb")
    return path


# ---------------------------------------------------------------- cutting text into units

def markdown_blocks(text):
    """`text` cut into [(separator, block, translatable)]: blocks separated by
    blank lines; a fenced code block or a display-math block is one block, and
    an nbgrader marker line (`### BEGIN SOLUTION`) one of its own, neither
    translatable. Joining separator + block of each gives `text` back."""
    blocks, current, fence = [], [], None

    def close():
        if current:
            blocks.append("\n".join(current))
            current.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        if fence is None and not stripped and current:
            close()
            continue
        if fence is None and _MARKER.match(stripped):
            close()
            blocks.append(line)
            continue
        if fence is None and (stripped.startswith("```") or stripped.startswith("$$")):
            fence = "```" if stripped.startswith("```") else "$$"
            if fence == "$$" and stripped.endswith("$$") and len(stripped) > 2:
                fence = None  # $$ ... $$ on one line
        elif fence is not None and (stripped.startswith(fence) or fence == "$$" and stripped.endswith("$$")):
            fence = None
        if stripped or fence is not None or current:
            current.append(line)
    close()
    out, rest = [], text
    for block in blocks:  # the separators: whatever lies between the blocks
        at = rest.index(block)
        kept = _MARKER.match(block.strip()) or block.lstrip().startswith(("```", "$$"))
        out.append((rest[:at], block, not kept))
        rest = rest[at + len(block):]
    if rest:
        out.append((rest, "", False))
    return out


def _solution_spans(code):
    """Character ranges of the `### BEGIN SOLUTION` blocks of `code`."""
    return [m.span() for m in _SOLUTION_BLOCK.finditer(code)]


def _offsets(code):
    """Character offset of each line's start (lines counted from 1)."""
    starts, total = [0, 0], 0
    for line in code.splitlines(keepends=True):
        total += len(line)
        starts.append(total)
    return starts


def _string_nodes(code):
    """[(start, end, literal)] for every string literal of `code` that holds
    words, outside the solution blocks: the character span of the literal (an
    implicit concatenation is one) and its canonical source."""
    tree = ast.parse(code)
    lines, starts = code.splitlines(keepends=True), _offsets(code)
    inside = {id(child) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
              for child in ast.walk(node) if child is not node}
    solution = _solution_spans(code)

    def char(lineno, col):  # ast columns count UTF-8 bytes
        return starts[lineno] + len(lines[lineno - 1].encode("utf-8")[:col].decode("utf-8"))

    found = []
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        else:
            continue
        if not _WORDS.search(text):
            continue
        start, end = char(node.lineno, node.col_offset), char(node.end_lineno, node.end_col_offset)
        if any(a <= start < b for a, b in solution):
            continue
        found.append((start, end, ast.unparse(node)))
    return sorted(found)


def _comments(code):
    """[(start, end, text)] for every comment of `code` outside the solution
    blocks, other than nbgrader's markers and `noqa` notes: the span of the
    text after `# `."""
    starts, solution, found = _offsets(code), _solution_spans(code), []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type != tokenize.COMMENT or _MARKER.match(tok.string) or "noqa" in tok.string:
            continue
        start = starts[tok.start[0]] + tok.start[1]
        body = tok.string.lstrip("#")
        lead = len(tok.string) - len(body.lstrip())
        if any(a <= start < b for a, b in solution) or not re.search(r"[A-Za-z]", body):
            continue
        found.append((start + lead, start + len(tok.string), body.strip()))
    return found


def code_units(code):
    """[(start, end, context, English)] of a code cell's source, in order."""
    try:
        strings = [(a, b, "string", t) for a, b, t in _string_nodes(code)]
    except SyntaxError:
        strings = []  # a cell IPython accepts and Python does not: its comments only
    comments = [(a, b, "comment", t) for a, b, t in _comments(code)]
    return sorted(strings + comments)


def _generated(cell):
    """A cell `python -m autograder.publish` writes, in either language."""
    from autograder.publish import MARK

    return MARK in cell.get("metadata", {})


def units(nb):
    """Every text unit of notebook `nb`, but those of its generated cells:
    [(cell index, context, English)]."""
    found = []
    for index, cell in enumerate(nb["cells"]):
        if _generated(cell):
            continue
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            found += [(index, "markdown", block) for _, block, ok in markdown_blocks(source) if ok]
        elif cell["cell_type"] == "code":
            found += [(index, context, text) for _, _, context, text in code_units(source)]
    return found


# ---------------------------------------------------------------- checking a translation

def _placeholders(literal):
    """The `{...}` fields of a literal (an f-string's expressions, a
    str.format template's fields, %-style fields), sorted."""
    node = ast.parse(literal, mode="eval").body
    if isinstance(node, ast.JoinedStr):
        fields = [ast.unparse(v) for v in node.values if isinstance(v, ast.FormattedValue)]
        return "f-string", sorted(fields)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        return "string", sorted(re.findall(r"\{[^{}]*\}|%[sdrfgx]", text))
    return type(node).__name__, []


def string_problems(english, chinese):
    """What a translated literal `chinese` breaks that it must keep: [reason]."""
    try:
        theirs = _placeholders(chinese)
    except SyntaxError as e:
        return [f"not a Python string literal ({e.msg})"]
    ours = _placeholders(english)
    if theirs[0] != ours[0]:
        return [f"a {theirs[0]} where the English is a {ours[0]}"]
    return [] if theirs[1] == ours[1] else [f"placeholders differ: {ours[1]} vs {theirs[1]}"]


def problems(context, english, chinese):
    """[reason] a translation of one unit fails, by its kind."""
    if not chinese.strip():
        return ["empty"]
    if context == "string":
        return string_problems(english, chinese)
    if context == "comment":
        return ["a comment spans lines"] if "\n" in chinese else []
    return markup_problems(english, chinese)


# ---------------------------------------------------------------- the Chinese notebook

def _translations(assignment):
    """{(context, English): Chinese} of the catalog, translated and current only."""
    path = catalog_path(assignment)
    if not path.exists():
        raise UsageError(f"{_shown(path)} is missing: run `python -m autograder.translations update`")
    return {(m.context, m.id): m.string for m in _read(path, locale=LANGUAGE)
            if m.id and m.string and not m.fuzzy}


def _translate_code(code, table, missing):
    out, last = [], 0
    for start, end, context, text in code_units(code):
        chinese = table.get((context, text))
        if chinese is None:
            missing.append((context, text))
            chinese = text
        out += [code[last:start], chinese]
        last = end
    return "".join(out) + code[last:]


def _translate_markdown(text, table, missing):
    out = []
    for separator, block, ok in markdown_blocks(text):
        chinese = table.get(("markdown", block)) if ok else block
        if chinese is None:
            missing.append(("markdown", block))
            chinese = block
        out += [separator, chinese]
    return "".join(out)


def translated(nb, assignment, table=None):
    """The Chinese twin of source notebook `nb` of `assignment` (a fresh copy).
    Raises UsageError naming the first unit the catalog lacks."""
    table = _translations(assignment) if table is None else table
    nb, missing = copy.deepcopy(nb), []
    for cell in nb["cells"]:
        if _generated(cell):
            continue  # publish writes them in Chinese
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            source = _translate_markdown(source, table, missing)
        elif cell["cell_type"] == "code":
            source = _translate_code(source, table, missing)
        cell["source"] = source.splitlines(keepends=True)
    if missing:
        context, text = missing[0]
        raise UsageError(f"{_shown(catalog_path(assignment))}: {len(missing)} units untranslated or "
                         f"fuzzy, the first a {context}: {' '.join(text.split())[:60]!r}; translate them, then "
                         f"run `python -m autograder.publish`")
    nb["metadata"]["edgpt"] = {"language": LANGUAGE, "translates": assignment}
    return nb


def skeleton(code):
    """The syntax tree of `code` with every string emptied: what a translation
    may not change (tests/test_exercise_translations.py)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
        elif isinstance(node, ast.JoinedStr):  # its fields, in any order (Chinese word order differs)
            node.values = sorted((v for v in node.values if isinstance(v, ast.FormattedValue)), key=ast.dump)
    return ast.dump(tree)


# ---------------------------------------------------------------- the catalogs

def english_assignments():
    from autograder import assignments

    return [a for a in assignments() if not english(a)]


def template(assignment):
    """The units of `assignment`'s English source as a catalog without
    translations: one message per distinct (context, English), located at the
    cells that hold it."""
    from babel.messages.catalog import Catalog

    path = source_path(assignment)
    nb = json.loads(path.read_text(encoding="utf-8"))
    catalog = Catalog(project="Encoder-Decoder vs GPT", fuzzy=False)
    rel = f"{SOURCE_DIR}/{assignment}/{path.name}"
    for index, context, text in units(nb):
        grade_id = nb["cells"][index]["metadata"].get("nbgrader", {}).get("grade_id")
        known = catalog.get(text, context=context)
        if known is None:
            catalog.add(text, context=context, locations=[(rel, index)],
                        auto_comments=[f"cell {grade_id}"] if grade_id else [])
        elif (rel, index) not in known.locations:
            known.locations.append((rel, index))
    return catalog


def _with_templates(work):
    """Call work({assignment: .pot path}) with every assignment's template written out."""
    with tempfile.TemporaryDirectory() as tmp:
        pots = {}
        for a in english_assignments():
            pots[a] = Path(tmp) / f"{a}.pot"
            _write(template(a), pots[a])
        return work(pots)


def update():
    """Merge every assignment's units into its catalog: {assignment: (new, changed, gone)}."""
    return _with_templates(lambda pots: {a: merge(pot, catalog_path(a)) for a, pot in pots.items()})


def stale_units():
    """[(assignment, "file:cell", reason, first words)] of every unit without a current translation."""
    def work(pots):
        found = []
        for a, pot in pots.items():
            path = catalog_path(a)
            done = {(m.context, m.id): m for m in _read(path, locale=LANGUAGE) if m.id} if path.exists() else {}
            for unit in _read(pot):
                if not unit.id:
                    continue
                reason = stale_reason(done.get((unit.context, unit.id)))
                if reason:
                    where = ", ".join(f"{f}:cell {n}" for f, n in unit.locations[:1])
                    found.append((a, where, f"{reason} ({unit.context})", " ".join(unit.id.split())[:60]))
        return found

    return _with_templates(work)

