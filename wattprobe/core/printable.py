"""Outside text made safe to show on a terminal: its invisible characters escaped.

A process picks its own name, command line and executable path, so whatever shows them on a terminal
must not let them through as they are: an escape sequence (ESC, or a C1 byte such as CSI 0x9b) can
clear the screen, set the window title or move the cursor to forge a line; a newline or carriage
return can forge a line too, and a bidi override (U+202A-202E, U+2066-2069) can reorder one visually.
`printable` escapes every character that Python's `repr` escapes (those `str.isprintable` rejects:
controls, format characters such as the bidi ones, separators other than the space, unassigned code
points) the way `repr` writes it: `\\x1b`, `\\n`, `\\u202e`. A byte that was not valid UTF-8 and was kept
by `surrogateescape` is shown as the byte, `\\x9b`. Rich markup is a separate matter: show the result as
a `rich.text.Text` (or through `rich.markup.escape`), never as markup.
"""

from __future__ import annotations

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text: str) -> str:
    """`text` with each character a terminal would act on, or that would hide or reorder text, escaped."""
    if text.isprintable():  # the usual case, and a C-speed scan
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that surrogateescape kept: show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
