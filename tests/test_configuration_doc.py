"""docs/configuration.md documents exactly the keys the loader (bridge/config.py) accepts.

The loader's keys are read from its source, not listed here: every section it opens is a ``_Map``
(``_Map(src, node, "prefix", KEYS)`` or ``parent.sub("name", KEYS)``) with the keys allowed in it,
literal or a module-level tuple. A section nests under the key of the same name in another section;
the two roots are ``_MAIN_KEYS`` (bridge.yaml) and ``_TENANT_KEYS`` (a tenant file). A new section or key
in the loader (the tenant's ``directory:`` one included) is therefore picked up without touching
this test, and must then be documented. A runtime check (loading conf/ while recording every
``_Map``) makes sure the source reading sees what the loader really opens.

The document's keys are the first cells of its tables, written as the full path in backticks
(`printer.delivery.lease_seconds`, `console.users[].name`), under the heading ``## bridge.yaml`` or
``## Tenant files``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import bridge.config
from tests.paths import REPO

CONFIG_PY = REPO / "bridge" / "config.py"
DOC = REPO / "docs" / "configuration.md"
ROOTS = {"_MAIN_KEYS": "bridge.yaml", "_TENANT_KEYS": "tenant"}
DOC_SECTIONS = {"bridge.yaml": "bridge.yaml", "tenant files": "tenant"}


@dataclass
class Section:
    """One mapping the loader opens: its name (None for a root), the keys allowed in it, where."""

    name: str | None
    keys: tuple[str, ...]
    line: int
    list_item: bool = False  # an element of a list: its keys are documented as NAME[].KEY
    root: str | None = None


@dataclass
class LoaderSource:
    tuples: dict[str, tuple[str, ...]]
    sections: list[Section] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)


def _str_tuple(node: ast.expr, tuples: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name):
        return tuples.get(node.id)
    if isinstance(node, ast.Tuple | ast.List):
        try:
            value = ast.literal_eval(node)
        except ValueError:
            return None
        if all(isinstance(v, str) for v in value):
            return tuple(value)
    return None


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            yield node


def _prefix_names(func: ast.FunctionDef, prefix: ast.expr, tree: ast.Module) -> tuple[list[str], bool] | None:
    """A ``_Map`` whose prefix is a variable: the key name(s) it stands for, and whether it is a list element.

    Two shapes occur: the loop variable of ``for key, item in _items(m, "NAME", node)`` (a list's
    elements), and ``key = parent.key(name)`` with ``name`` a parameter that callers pass literally.
    """
    if not isinstance(prefix, ast.Name):
        return None
    for node in ast.walk(func):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Tuple) and node.target.elts
                and isinstance(node.target.elts[0], ast.Name) and node.target.elts[0].id == prefix.id
                and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name)
                and node.iter.func.id == "_items" and len(node.iter.args) >= 2
                and (name := _literal(node.iter.args[1])) is not None):
            return [name], True
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == prefix.id and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "key"
                and len(node.value.args) == 1 and isinstance(node.value.args[0], ast.Name)):
            param = node.value.args[0].id
            params = [a.arg for a in func.args.args]
            if param not in params:
                return None
            index = params.index(param)
            names = []
            for call in ast.walk(tree):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == func.name
                        and len(call.args) > index and (name := _literal(call.args[index])) is not None):
                    names.append(name)
            return (names, False) if names else None
    return None


def read_loader(path: Path = CONFIG_PY) -> LoaderSource:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tuples: dict[str, tuple[str, ...]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            value = _str_tuple(stmt.value, {})
            if value is not None and isinstance(stmt.value, ast.Tuple):
                tuples[stmt.targets[0].id] = value
    source = LoaderSource(tuples=tuples)
    for func in _functions(tree):
        if func.name in ("sub", "__init__"):  # _Map's own methods
            continue
        for call in ast.walk(func):
            if not isinstance(call, ast.Call):
                continue
            if isinstance(call.func, ast.Attribute) and call.func.attr == "sub" and len(call.args) == 2:
                name, keys_node = _literal(call.args[0]), call.args[1]
                keys = _str_tuple(keys_node, tuples)
                if name is None or keys is None:
                    source.unresolved.append(f"line {call.lineno}: {ast.unparse(call)}")
                    continue
                source.sections.append(Section(name=name, keys=keys, line=call.lineno))
            elif isinstance(call.func, ast.Name) and call.func.id == "_Map" and len(call.args) == 4:
                prefix, keys_node = call.args[2], call.args[3]
                keys = _str_tuple(keys_node, tuples)
                if keys is None:
                    source.unresolved.append(f"line {call.lineno}: {ast.unparse(call)}")
                    continue
                literal = _literal(prefix)
                if literal == "":
                    root = ROOTS.get(keys_node.id) if isinstance(keys_node, ast.Name) else None
                    if root is None:
                        source.unresolved.append(f"line {call.lineno}: a root mapping with keys other than "
                                                 f"{', '.join(ROOTS)}: {ast.unparse(call)}")
                        continue
                    source.sections.append(Section(name=None, keys=keys, line=call.lineno, root=root))
                elif literal is not None:
                    source.sections.append(Section(name=literal, keys=keys, line=call.lineno))
                elif (found := _prefix_names(func, prefix, tree)) is not None:
                    names, list_item = found
                    for name in names:
                        source.sections.append(Section(name=name, keys=keys, line=call.lineno, list_item=list_item))
                else:
                    source.unresolved.append(f"line {call.lineno}: {ast.unparse(call)}")
    return source


def loader_keys(source: LoaderSource) -> dict[str, set[str]]:
    """Every key path per file kind (sections themselves included): {"bridge.yaml": {...}, "tenant": {...}}."""
    by_name: dict[str, list[Section]] = {}
    for section in source.sections:
        if section.name is not None:
            by_name.setdefault(section.name, []).append(section)
    for name, found in by_name.items():
        distinct = {(s.keys, s.list_item) for s in found}
        assert len(distinct) == 1, (
            f"bridge/config.py opens sections named {name!r} with different keys (lines "
            f"{', '.join(str(s.line) for s in found)}): teach tests/test_configuration_doc.py to tell them apart")
    result: dict[str, set[str]] = {kind: set() for kind in ROOTS.values()}

    def walk(kind: str, prefix: str, keys: tuple[str, ...], seen: tuple[str, ...]) -> None:
        for key in keys:
            path = f"{prefix}{key}"
            result[kind].add(path)
            sub = by_name.get(key)
            if sub and key not in seen:
                inner = f"{path}[]." if sub[0].list_item else f"{path}."
                walk(kind, inner, sub[0].keys, (*seen, key))

    for section in source.sections:
        if section.root is not None:
            walk(section.root, "", section.keys, ())
    return result


_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def documented_keys(text: str) -> dict[str, set[str]]:
    """The first-cell keys of the tables under ``## bridge.yaml`` and ``## Tenant files``."""
    result: dict[str, set[str]] = {kind: set() for kind in ROOTS.values()}
    kind: str | None = None
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        if line.startswith("## "):
            kind = DOC_SECTIONS.get(line[3:].strip().lower())
            continue
        if kind is not None and (match := _ROW.match(line)):
            result[kind].add(match.group(1))
    return result


@pytest.fixture(scope="module")
def source() -> LoaderSource:
    return read_loader()


def test_the_loader_source_is_read_completely(source: LoaderSource) -> None:
    assert not source.unresolved, "bridge/config.py opens mappings this test cannot read:\n" + "\n".join(
        source.unresolved)
    assert {s.root for s in source.sections if s.root} == set(ROOTS.values())
    used = {s.keys for s in source.sections}
    unused = [name for name, keys in source.tuples.items() if name.endswith("_KEYS") and keys not in used]
    assert not unused, f"key tuples that no section reads (or that this test does not see used): {unused}"


def test_every_loader_key_is_documented(source: LoaderSource) -> None:
    loader, documented = loader_keys(source), documented_keys(DOC.read_text(encoding="utf-8"))
    missing = {kind: sorted(loader[kind] - documented[kind]) for kind in loader}
    assert not any(missing.values()), (
        "keys the loader accepts but docs/configuration.md does not document (a table row whose first cell is "
        f"the full path in backticks, under '## bridge.yaml' or '## Tenant files'): {missing}")


def test_every_documented_key_is_known_to_the_loader(source: LoaderSource) -> None:
    loader, documented = loader_keys(source), documented_keys(DOC.read_text(encoding="utf-8"))
    unknown = {kind: sorted(documented[kind] - loader[kind]) for kind in loader}
    assert not any(unknown.values()), f"docs/configuration.md documents keys the loader does not know: {unknown}"


def test_the_directory_section_links_to_its_own_page(source: LoaderSource) -> None:
    text = DOC.read_text(encoding="utf-8")
    if "directory" in loader_keys(source)["tenant"]:
        row = next(line for line in text.splitlines() if line.startswith("| `directory` |"))
        assert "(directory.md" in row


def test_environment_variables_of_the_loader_are_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = [value for name, value in vars(bridge.config).items()
             if name.endswith("_ENV") and isinstance(value, str)]
    assert names, "bridge/config.py names no environment variable (STORE_URL_ENV)?"
    for name in [*names, "LOGINBRIDGE_CONFIG"]:
        assert f"`{name}`" in text


def test_the_source_reading_matches_what_the_loader_opens(source: LoaderSource, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """Load the demo configuration while recording every mapping the loader checks: each one is known."""
    import shutil

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    seen: list[tuple[str, tuple[str, ...]]] = []
    original = bridge.config._Map.__init__

    def recording(self: Any, src: Any, node: Any, prefix: str, allowed: Any) -> None:
        seen.append((prefix, tuple(allowed)))
        original(self, src, node, prefix, allowed)

    monkeypatch.setattr(bridge.config._Map, "__init__", recording)
    bridge.config.load_config(tmp_path / "conf" / "bridge.yaml", require_files=False)
    assert len(seen) > 5
    loader = loader_keys(source)
    every = loader["bridge.yaml"] | loader["tenant"]
    for prefix, allowed in seen:
        path = re.sub(r"\[\d+\]", "[]", prefix)
        assert not path or path.removesuffix("[]") in every, (
            f"the loader opened {prefix!r}, which the source reading does not know")
        inner = f"{path}." if path else ""
        for key in allowed:
            assert f"{inner}{key}" in every, f"{inner}{key}"
