"""Markdown for the console: the error catalogue's notes and the troubleshooting guide, as HTML.

Only text that ships with the bridge is rendered as Markdown (the catalogue in
bridge/errorcatalog.py and docs/troubleshooting.md), with raw HTML off, so the
HTML that comes out is made by markdown-it alone.  Nothing from the audit trail
goes through here: the templates escape it.

The guide is served at ``/console/troubleshooting`` so a technician on site,
offline or not, can follow a code from the attempts list to its section: each
section heading gets the id of the first error code it names, the other codes
it names get an anchor of their own (``#idp_error`` lands on the
``idp_unreachable`` section), and a code no heading names gets one where the
text first names it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from bridge.errorcatalog import catalogue

# bridge/console/guide.py -> the repository (or source tree) root; absent in a wheel without the docs.
GUIDE_PATH = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
_CODE = re.compile(r"[a-z][a-z0-9_]*")
_SLUG_DROP = re.compile(r"[^a-z0-9 _-]")


def inline(text: str) -> Markup:
    """One line of trusted Markdown (a catalogue note) as inline HTML: `code`, **bold**, links."""
    return Markup(_MD.renderInline(text))  # noqa: S704 (markdown-it with html off: it escapes what it does not make)


def first_clause(text: str) -> str:
    """The start of a catalogue note, up to its first full stop, semicolon, colon or parenthesis.

    Markdown stays balanced because the cut never falls inside a backtick span.
    """
    depth = 0
    for index, char in enumerate(text):
        if char == "`":
            depth ^= 1
        elif depth == 0 and (char in ";(" or (char in ".:" and text[index + 1:index + 2] in (" ", ""))):
            return text[:index].rstrip(" ,")
    return text


@dataclass(frozen=True, slots=True)
class Guide:
    html: Markup
    anchors: frozenset[str]  # every id a link may point at
    from_docs: bool  # False: docs/troubleshooting.md is not installed; the catalogue stands in


def _slug(text: str, taken: set[str]) -> str:
    base = "-".join(_SLUG_DROP.sub("", text.lower()).split()) or "section"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def _anchor_headings(tokens: list[Token], codes: frozenset[str]) -> set[str]:
    """Give each heading an id: its first error code, else a slug of its text; other codes get spans."""
    taken: set[str] = set()
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or index + 1 >= len(tokens):
            continue
        content = tokens[index + 1]
        children = content.children or []
        named = [c.content for c in children if c.type == "code_inline" and c.content in codes
                 and _CODE.fullmatch(c.content) and c.content not in taken]
        if named:
            token.attrSet("id", named[0])
            taken.update(named)
            content.children = [_alias(code) for code in named[1:]] + children
        else:
            slug = _slug(content.content, taken)
            token.attrSet("id", slug)
            taken.add(slug)
    # A code no heading names gets its anchor where the text first names it (a list item, a table cell).
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        named = list(dict.fromkeys(c.content for c in token.children if c.type == "code_inline"
                                   and c.content in codes and c.content not in taken and _CODE.fullmatch(c.content)))
        if named:
            token.children = [_alias(code) for code in named] + token.children
            taken.update(named)
    return taken


def _alias(code: str) -> Token:
    return Token("html_inline", "", 0, content=f'<span id="{code}" class="alias"></span>')


def _catalogue_markdown() -> str:
    lines = ["# Error codes", "",
             "docs/troubleshooting.md is not installed with this copy of the bridge; these are the codes "
             "and the administrator's note for each.", ""]
    for entry in catalogue():
        lines += [f"### \"{entry.panel_message}\" — `{entry.code}`", "", f"- {entry.admin_detail}", ""]
    return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def _render(text: str, from_docs: bool) -> Guide:
    codes = frozenset(entry.code for entry in catalogue())
    env: dict[str, object] = {}
    tokens = _MD.parse(text, env)
    anchors = _anchor_headings(tokens, codes)
    html = _MD.renderer.render(tokens, _MD.options, env)
    return Guide(html=Markup(html), anchors=frozenset(anchors), from_docs=from_docs)  # noqa: S704 (as inline)


def guide(path: Path = GUIDE_PATH) -> Guide:
    """The troubleshooting guide as HTML (re-rendered when the file changes; the catalogue if it is missing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return _render(_catalogue_markdown(), False)
    return _render(text, True)
