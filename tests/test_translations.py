"""The Chinese edition (autograder/translations.py): its catalogs stay in step
with the English pages, and the built edition is Chinese, linked and searchable."""
import json
import re

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from autograder import REPO, translations
from autograder.translations import markup_problems

TOC_PAGES = sorted(re.findall(r"(?:root|file): (book/\w+)", (REPO / "_toc.yml").read_text(encoding="utf-8")))


def _po(path, units, fuzzy=()):
    """Write a catalog of {English: Chinese} units; those in `fuzzy` marked fuzzy."""
    catalog = Catalog(locale="zh_CN")
    for english, chinese in units.items():
        catalog.add(english, chinese, locations=[("book/page.md", 3)],
                    flags=("fuzzy",) if english in fuzzy else ())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        write_po(f, catalog, width=0)
    return path


@pytest.fixture
def scratch_catalogs(tmp_path, monkeypatch):
    monkeypatch.setattr(translations, "CATALOGS", tmp_path / "catalogs")
    return tmp_path


def test_a_changed_english_unit_keeps_its_chinese_marked_fuzzy_with_the_old_english(scratch_catalogs):
    old = _po(scratch_catalogs / "catalogs" / "book" / "page.po",
              {"The model is trained for 300 steps.": "模型训练 300 步。", "Attention": "注意力"})
    pot = _po(scratch_catalogs / "page.pot", {"The model is trained for 250 steps.": "", "Attention": "",
                                              "A new paragraph.": ""})
    assert translations.merge(pot, old) == (1, 1, 1)
    units = {m.id: m for m in read_po(open(old, "rb")) if m.id}
    changed = units["The model is trained for 250 steps."]
    assert changed.fuzzy and changed.string == "模型训练 300 步。"
    # the English it was written for, for the translator (Babel does not read it back)
    assert ('#| msgid "The model is trained for 300 steps."\nmsgid "The model is trained for 250 steps."'
            in old.read_text(encoding="utf-8"))
    assert not units["Attention"].fuzzy and units["Attention"].string == "注意力"
    assert units["A new paragraph."].string == ""


def test_stale_units_names_each_untranslated_and_fuzzy_unit_by_place(scratch_catalogs):
    _po(scratch_catalogs / "catalogs" / "book" / "page.po",
        {"Current.": "当前。", "Changed.": "已改。", "Empty.": ""}, fuzzy={"Changed."})
    pot = _po(scratch_catalogs / "page.pot", {"Current.": "", "Changed.": "", "Empty.": "", "Missing.": ""})
    found = translations.stale_units({"book/page": pot})
    assert [(reason, words) for _, _, reason, words in found] == [
        ("the English changed (fuzzy)", "Changed."), ("no translation", "Empty."), ("no translation", "Missing.")]
    assert all(where == "book/page.md:3" for _, where, _, _ in found)


def test_the_check_command_exits_1_and_lists_a_stale_unit(scratch_catalogs, monkeypatch, capsys):
    pot = _po(scratch_catalogs / "page.pot", {"Missing.": ""})
    monkeypatch.setattr(translations, "extract", lambda out: {"book/page": pot})
    assert translations.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "book/page.md:3: no translation: Missing." in out and "1 units without a current translation" in out


@pytest.mark.parametrize("english, chinese, problem", [
    ("uses $h_T$ here", "这里用 $h_t$", "math differs"),
    ("call `beam_search`", "调用 beam_search", "code differs"),
    ("see [the guide](student_guide.md)", "见[指南](instructor_guide.md)", "link target differs"),
    ("the {term}`decoder <decoder>` reads", "{term}`解码器 <解码器>` 读取", "role targets differ"),
    ("a {term}`token`", "一个词元", "role targets differ"),
    ("anything", "", "empty"),
])
def test_lint_finds_a_translation_that_lost_its_markup(english, chinese, problem):
    assert problem in markup_problems(english, chinese)


def test_lint_accepts_a_translation_that_keeps_its_markup():
    assert markup_problems("the {term}`decoder <decoder>` of a {term}`token` sees $h_T$ via `attn` "
                           "([guide](student_guide.md))",
                           "{term}`词元 <token>` 经 `attn` 被{term}`解码器 <decoder>`看到 $h_T$（[指南](student_guide.md)）") == []


@pytest.mark.slow
def test_every_english_unit_has_a_current_chinese_twin():
    units = translations.stale_units()
    stale = [u for u in units if u[0] not in translations.IN_PROGRESS or u[2] != "no translation"]
    assert not stale, "run `python -m autograder.translations update`, then translate:\n" + "\n".join(
        f"{where}: {reason}: {words}" for _, where, reason, words in stale[:40])
    finished = translations.IN_PROGRESS - {page for page, _, _, _ in units}
    assert not finished, f"translated, so no longer in progress: {sorted(finished)}"


def test_every_translation_keeps_its_markup():
    problems = translations.lint(sorted(translations.CATALOGS.rglob("*.po")))
    assert not problems, "\n".join(f"{p}:{line}: {what}: {words}" for p, line, words, what in problems[:40])


# The built Chinese edition (`make book-zh`, into the English site's zh/).

def _prose(html):
    """The text of a page's main part without its code, outputs, math and diagrams."""
    main = re.search(r"<main.*?</main>", html, re.S)
    text = re.sub(r"<(script|style|pre|code)\b.*?</\1>", " ", main.group(0) if main else html, flags=re.S)
    text = re.sub(r'<(div|span) class="[^"]*(math|mermaid|output)[^"]*".*?</\1>', " ", text, flags=re.S)
    text = re.sub(r"\\\(.*?\\\)|\\\[.*?\\\]|\$\$.*?\$\$", " ", text, flags=re.S)
    return re.sub(r"<[^>]+>", " ", text)


@pytest.mark.slow
@pytest.mark.parametrize("page", TOC_PAGES)
def test_every_page_has_a_chinese_twin_and_each_links_to_the_other(site, zh_site, page):
    english, chinese = (site / f"{page}.html"), (zh_site / f"{page}.html")
    assert chinese.exists(), f"{page} is missing from the Chinese edition"
    for here, there, language in [(english, chinese, "zh-CN"), (chinese, english, "en")]:
        html = here.read_text(encoding="utf-8")
        link = re.search(rf'<p class="edgpt-twin"><a href="([^"]+)" hreflang="{language}"', html)
        assert link, f"{here.relative_to(site)} has no link to its twin"
        assert (here.parent / link.group(1)).resolve() == there.resolve()
    if page in translations.IN_PROGRESS:
        return
    text = _prose(chinese.read_text(encoding="utf-8"))
    han, latin = len(re.findall(r"[\u4e00-\u9fff]", text)), len(re.findall(r"[A-Za-z]", text))
    # Code, outputs and math stay as they are; the prose is Chinese, with the
    # names of models and functions and the glossary's English terms in it
    # (measured: 1.7 Chinese characters per Latin letter on the guides, 4 to
    # 30 on the chapters; the status page is a table of measured numbers).
    assert han > 200 or page == "book/status", f"{page}: only {han} Chinese characters"
    assert re.search(r'<html[^>]*lang="zh[-_]CN"', chinese.read_text(encoding="utf-8"))
    assert han > latin or page == "book/status", f"{page}: {han} Chinese characters, {latin} Latin letters"


@pytest.mark.slow
def test_search_in_chinese_finds_the_page_about_it(zh_site):
    index = (zh_site / "searchindex.js").read_text(encoding="utf-8")
    data = json.loads(index[index.index("(") + 1:index.rindex(")")])
    docs = data["docnames"]

    def pages(term):  # as Sphinx's search looks a word up: in the text and in the titles
        found = set()
        for where in ("terms", "titleterms"):
            hits = data[where].get(term, [])
            found |= {docs[i] for i in ([hits] if isinstance(hits, int) else hits)}
        return found

    assert "book/attention" in pages("注意力")
    assert "book/causal_masking" in pages("掩码")
    assert "book/glossary" in pages("词元")


# The questions of the source notes (../shared/seeds), in their own words,
# each at the start of the section that answers it.
NOTES_QUESTIONS = {
    "book/encoder_decoder_idea": ["编码器-解码器架构 到底是什么？可不可以给我个例子讲解？", "h, x, s, y到底是啥"],
    "book/encoder_decoder": ["h, x, s, y到底是啥"],
    "book/embedding_vs_encoder": ["这不是相当于还是有编码？为啥这种通过嵌入层转化为向量表示不算编码？",
                                  "transformer模型中的token的向量编码"],
    "book/feed_forward": ["这里的前反馈机制是具体的是什么意思？"],
    "book/multi_head_attention": ["多头注意力机制，具体是什么？"],
    "book/causal_masking": ["GPT 只使用transformer的 decode为什么它还是transform模型呢？",
                            "因果遮掩 (Causal Masking) 是推理的时候还是调优的时候？",
                            "如果是这样的话，只看到之前的内容，那与RNN的区别是什么？",
                            "gpt什么叫只有解码器，那对于这个只有解码器来说，他的输入的是一个固定长度的向量么？"],
    "book/bert_gpt_t5": ["具体在分类问题上的话，也有大量使用GPT来做的?"],
    "book/capstone": ["这个和只用decoder的gpt有什么区别？"],
}


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(NOTES_QUESTIONS))
def test_the_notes_questions_open_the_sections_that_answer_them(site, zh_site, page):
    for root in (site, zh_site):
        html = (root / f"{page}.html").read_text(encoding="utf-8")
        for question in NOTES_QUESTIONS[page]:
            # a section's heading, then (after its anchor) the quoted question
            pattern = r"</h[1-3]>\s*<blockquote>\s*<div>\s*<p>笔记 \d{3}：" + re.escape(question)
            assert re.search(pattern, html), f"{root.name}/{page}: {question}"
