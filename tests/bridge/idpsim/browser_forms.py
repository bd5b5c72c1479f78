"""Test helper: the forms of an HTML page, read with the standard library's HTMLParser (no browser needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass(kw_only=True)
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # inputs with a name (hidden or not), by name
    input_types: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, label)


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.scripts: list[str] = []
        self.title = ""
        self.text: list[str] = []
        self._button: tuple[str, str] | None = None
        self._label: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(action=a.get("action", ""), method=a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")
            self.forms[-1].input_types[a["name"]] = a.get("type", "text")
        elif tag == "button" and self.forms:
            self._button = (a.get("name", ""), a.get("value", ""))
            self._label = []
        elif tag in ("script", "title"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self.forms:
            self.forms[-1].buttons.append((*self._button, "".join(self._label).strip()))
            self._button = None
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._label.append(data)
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "title":
            self.title += data
        else:
            self.text.append(data)


@dataclass(frozen=True, kw_only=True)
class Page:
    title: str
    forms: list[Form]
    scripts: list[str]
    text: str


def read_page(html: str) -> Page:
    reader = _FormReader()
    reader.feed(html)
    reader.close()
    return Page(title=reader.title, forms=reader.forms, scripts=reader.scripts, text=" ".join(reader.text))


def only_form(html: str) -> Form:
    page = read_page(html)
    assert len(page.forms) == 1, html
    return page.forms[0]
