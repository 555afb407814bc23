"""Secrets out of command lines before they leave the machine.

Every output carries process command lines (a Prometheus label, a Warp 10 label, a Riemann attribute,
a JSON field), and command lines carry secrets: `mysql -pSECRET`, `--token=...`, `PASSWORD=... cmd`,
`https://user:pass@host`. They are redacted once, when a process's facts are read, so no output can
leak them. The rules (on by default, `--no-redaction` turns them off):

- the value of an option whose name says it is a secret: `--password X`, `--password=X`,
  `--db-password=X`, `-token X`, `--pass X`... (names containing password, passwd, pwd, secret, token,
  api-key, apikey, access-key, private-key, credential(s), auth-key); this errs on the side of hiding:
  the argument after a flag such as `--no-password` is hidden too;
- `-pSECRET` and `-p SECRET` for the tools that take a password so: mysql, mysqldump, mysqladmin,
  mariadb, mariadb-dump, sshpass;
- an argument shaped `KEY=VALUE` whose KEY says it is a secret (`DB_PASSWORD=...`, `api_token=...`);
- the password of a URL (`scheme://user:PASSWORD@host`);
- any text matching `--redact-pattern REGEX` (its first group if it has one, else the whole match);
- the agent's own secrets (a Warp 10 write token given with -t), wherever they appear.

A redacted value reads `<redacted>`; the option names, the program and the rest stay as they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MASK = "<redacted>"
_SECRET = r"(?:password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credentials?|auth[-_]?key)"
_OPTION = re.compile(rf"^(-{{1,2}}(?:[\w.-]*{_SECRET}[\w.-]*|pass))(=(.*))?$", re.IGNORECASE)
_ASSIGNMENT = re.compile(rf"^([A-Za-z_][\w.-]*{_SECRET}[\w.-]*)=(.+)$", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^/\s@]+)(@)", re.IGNORECASE)
_SHORT_P_TOOLS = frozenset({"mysql", "mysqldump", "mysqladmin", "mariadb", "mariadb-dump", "sshpass"})


@dataclass(frozen=True)
class Redactor:
    """Redacts argv entries; `enabled` False keeps them as they are (but for `secrets`)."""

    enabled: bool = True
    pattern: re.Pattern[str] | None = None
    secrets: frozenset[str] = field(default_factory=frozenset)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        return Redactor(self.enabled, self.pattern, self.secrets | {s for s in secrets if s})

    def argv(self, argv: Sequence[str]) -> tuple[str, ...]:
        """The argv with every secret replaced by MASK."""
        out = list(argv)
        if self.enabled:
            program = out[0].rsplit("/", 1)[-1] if out else ""
            hide_next = False
            for i, arg in enumerate(out):
                if hide_next:
                    out[i], hide_next = MASK, False
                    continue
                out[i], hide_next = self._arg(arg, short_p=program in _SHORT_P_TOOLS and i > 0)
        return tuple(self._own(arg) for arg in out)

    def text(self, text: str) -> str:
        """A command line already joined by spaces (no argv at hand): each word redacted."""
        return " ".join(self.argv(text.split(" ")))

    def _arg(self, arg: str, *, short_p: bool) -> tuple[str, bool]:
        """The argument redacted, and whether the next one is a secret option's value."""
        option = _OPTION.match(arg)
        if option:
            if option.group(2) is None:
                return arg, True
            return f"{option.group(1)}={MASK}", False
        if short_p and arg.startswith("-p") and not arg.startswith("--"):
            return ("-p" + MASK, False) if len(arg) > 2 else (arg, True)
        assignment = _ASSIGNMENT.match(arg)
        if assignment:
            return f"{assignment.group(1)}={MASK}", False
        arg = _URL_PASSWORD.sub(rf"\1{MASK}\3", arg)
        if self.pattern is not None:
            arg = self.pattern.sub(self._masked, arg)
        return arg, False

    @staticmethod
    def _masked(match: re.Match[str]) -> str:
        if match.re.groups:
            start, end = match.span(1) if match.group(1) is not None else match.span()
            whole_start = match.start()
            text = match.group(0)
            return text[: start - whole_start] + MASK + text[end - whole_start :]
        return MASK

    def _own(self, arg: str) -> str:
        for secret in self.secrets:
            if secret in arg:
                arg = arg.replace(secret, MASK)
        return arg
