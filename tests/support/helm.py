"""Renders the small subset of Helm's template language the chart in deploy/helm uses, for tests.

Supported: `{{ .Path }}` (from the current dot), `{{- if X }}`, `{{- with X }}`, `{{- else }}`, `{{- end }}`,
whitespace trimming with `{{-` and `-}}`, string literals, and the functions quote, default, toYaml,
nindent and indent, with pipes. Anything else raises, so the chart stays within what is tested.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def render(template: str, context: dict[str, Any]) -> str:
    """The template rendered with `context` as its dot."""
    tokens = _tokens(template)
    tree, rest = _parse(tokens, 0)
    if rest != len(tokens):
        raise ValueError("unbalanced {{ end }}")
    return _run(tree, context)


def _tokens(src: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(src):
        text = src[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        tokens += [("text", text), ("action", m.group(2))]
        pos, trim_next = m.end(), bool(m.group(3))
    tokens.append(("text", src[pos:].lstrip() if trim_next else src[pos:]))
    return tokens


def _parse(tokens: list[tuple[str, str]], i: int) -> tuple[list, int]:
    """Nodes until an `end` or `else` (or the end): text, ("expr", e), ("if"/"with", e, body, else)."""
    nodes: list = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(value)
        elif value in ("end", "else"):
            return nodes, i - 1
        elif value.split(" ", 1)[0] in ("if", "with"):
            keyword, expr = value.split(" ", 1)
            body, i = _parse(tokens, i)
            otherwise: list = []
            if i < len(tokens) and tokens[i] == ("action", "else"):
                otherwise, i = _parse(tokens, i + 1)
            if i >= len(tokens) or tokens[i] != ("action", "end"):
                raise ValueError(f"{{{{ {value} }}}} without {{{{ end }}}}")
            nodes.append((keyword, expr, body, otherwise))
            i += 1
        else:
            nodes.append(("expr", value))
    return nodes, i


def _run(nodes: list, dot: Any) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "expr":
            out.append(_text(_eval(node[1], dot)))
        else:
            value = _eval(node[1], dot)
            if value:
                out.append(_run(node[2], value if node[0] == "with" else dot))
            else:
                out.append(_run(node[3], dot))
    return "".join(out)


def _eval(pipeline: str, dot: Any) -> Any:
    value: Any = None
    for i, command in enumerate(pipeline.split("|")):
        words = shlex.split(command.strip(), posix=False)
        args = [*[_value(w, dot) for w in words[1:]], *([value] if i else [])]
        if words[0].startswith((".", '"')):
            if len(words) > 1 or i:
                raise ValueError(f"unsupported pipeline {pipeline!r}")
            value = _value(words[0], dot)
        else:
            value = _FUNCTIONS[words[0]](*args)
    return value


def _value(word: str, dot: Any) -> Any:
    if word.startswith('"'):
        return json.loads(word)
    if word.isdigit():
        return int(word)
    if word == ".":
        return dot
    if not word.startswith("."):
        raise ValueError(f"unsupported word {word!r}")
    for key in word[1:].split("."):
        dot = dot.get(key) if isinstance(dot, dict) else None
    return dot


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")


def _indent(n: int, text: str) -> str:
    return "\n".join(" " * n + line for line in text.split("\n"))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "quote": lambda v: json.dumps(_text(v)),
    "default": lambda fallback, v: v if v else fallback,
    "toYaml": _to_yaml,
    "indent": _indent,
    "nindent": lambda n, text: "\n" + _indent(n, text),
}
