"""Sphinx extension: every page of one edition links to its twin in the other.

The English edition is the root of the published site and the Chinese one
its folder `zh/` (the publishing workflow puts it there, see README); a page
has the same name in both. The link goes at the top of the page body, and a
`<link rel="alternate" hreflang>` tells search engines about the twin.
"""

# language of the edition being built -> (language of its twin, path from the
# site root of this edition to the twin's, the link's text)
TWINS = {"en": ("zh-CN", "zh/", "中文版"), "zh_CN": ("en", "../", "English edition")}


def twin_href(language, pagename):
    """Relative URL of page `pagename`'s twin, from that page in the edition of `language`."""
    _, root, _ = TWINS[language]
    return "../" * pagename.count("/") + root + pagename + ".html"


def add_twin_link(app, pagename, templatename, context, doctree):
    if doctree is None:  # search page, index: no twin of their own
        return
    language = app.config.language if app.config.language in TWINS else "en"
    twin_language, _, text = TWINS[language]
    href = twin_href(language, pagename)
    context["body"] = (f'<p class="edgpt-twin"><a href="{href}" hreflang="{twin_language}" '
                       f'lang="{twin_language}">{text}</a></p>\n') + context.get("body", "")
    context["metatags"] = context.get("metatags", "") + (
        f'\n<link rel="alternate" hreflang="{twin_language}" href="{href}" />')


def setup(app):
    app.connect("html-page-context", add_twin_link)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
