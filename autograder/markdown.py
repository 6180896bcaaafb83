"""Text in Markdown that must stay text: what a student wrote and what the
grader said, in feedback pages and in the notebook formgrader shows; and the
course's own math as MathML, which browsers draw without MathJax or a CDN."""
import html
import re


def text(s: str) -> str:
    """Any text as literal Markdown: no HTML, no emphasis, no heading, no
    table break ("2*3 weights" stays "2*3 weights", `<script>` stays text)."""
    escaped = re.sub(r"([\\`*_{}\[\]()#+\-.!|~$=])", r"\\\1", s)
    escaped = html.escape(escaped, quote=False).replace("\n", " ")
    # leading spaces would make a code block
    return re.sub(r"^[ \t]+", lambda m: "&nbsp;" * len(m.group(0)), escaped)


def literal(s: str) -> str:
    """A student's text, line by line, shown exactly as typed: no HTML, no
    Markdown, no link or image (nothing a page would load or run)."""
    return "<br>\n".join(text(line) for line in (s or "").splitlines()) or "(empty)"


MATH = re.compile(r"(`[^`]*`)|\$\$(.+?)\$\$|\$([^$\n]+?)\$", re.S)


def with_mathml(markdown: str) -> str:
    """Markdown with each `$...$` and `$$...$$` replaced by MathML (code spans
    left alone); math that cannot be converted stays as its TeX."""
    from latex2mathml.converter import convert

    def one(m):
        if m.group(1):
            return m.group(1)
        tex, display = (m.group(2), "block") if m.group(2) is not None else (m.group(3), "inline")
        try:
            return convert(html.unescape(tex), display=display)
        except Exception:  # noqa: BLE001 - a formula the converter cannot read is shown as written
            return m.group(0)

    return MATH.sub(one, markdown)
