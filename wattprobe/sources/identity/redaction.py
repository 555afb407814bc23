"""Secrets out of command lines before they leave the machine.

Every output carries process command lines (a Prometheus label, a Warp 10 label, a Riemann attribute,
a JSON field), and command lines carry secrets. They are redacted once, when a process's facts are
read, so no output can leak them. The rules (on by default, `--no-redaction` turns them off); a
hidden value reads `<redacted>`, option names, the program and the rest stay:

- a secret name has password, passwd, passphrase, pass, pwd, pw, secret, token, key, auth,
  authorization, credential, cookie or bearer in it (`--db-password`, `DB_PASS`, `X-Api-Key`,
  `apiKey`; not `--tokenizer`, `--keyboard`, `--passive`, `--author`);
- `--secret-name X`: X hidden; when X is empty or itself a secret option, the next one too;
- `NAME=VALUE` and `NAME: VALUE` with a secret NAME, anywhere in an argument (`PASSWORD=x`,
  `--set=db.password=x`, `Authorization: Bearer x`, `{"token": "x"}`): all after `=` or `:`;
- a URL's userinfo: `scheme://user:PASSWORD@host` (up to the last @ before the host), and
  `scheme://TOKEN@host` whole;
- `-u`, `-U`, `--user`, `--proxy-user` `USER:PASSWORD` (curl, wget...): the value, whole;
- per tool: `-pX` and `-p X` of mysql, mariadb, mongo and sshpass tools and 7z, `-a X` of
  redis-cli, `-w X` of the ldap tools, `-P X` of zip, unzip and sqlcmd;
- an argument with spaces (a title a daemon wrote into its argv[0], `sh -c '...'`) is read word by
  word, and from its first secret on, the rest of that argument is hidden;
- whatever `--redact-pattern REGEX` matches (its first group if it has one);
- the agent's own secrets (a Warp 10 write token given with -t), wherever they appear.

When unsure which word is the secret, more is hidden, never the neighbour instead. The rules' cost is
linear in a command line's length: substring tests, and regular expressions that cannot backtrack
(a repetition is atomic, possessive, or starts only where a word or a name starts). A
`--redact-pattern` is the user's own regular expression, and so is its cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MASK = "<redacted>"

# Every secret name contains one of these (lowercase): a fast test before the regular expressions.
_SECRET_WORDS = ("pass", "pw", "secret", "credential", "cookie", "bearer", "token", "key", "auth")
# Where a secret word starts in a name: literals and fixed-width lookarounds only ("token" and "key"
# end a word: not "tokenizer", "keyboard"; "auth" and "pw" are one: not "author").
_SECRET = (
    r"(?=[abckpst])(?:p(?:ass(?:w|phrase|(?:in|out)?(?![a-z]))|wd|w(?<![a-z]pw)(?![a-z]))|secret"
    r"|c(?:redential|ookie)|a(?:uthori[sz]ation|uth(?<![a-z]auth)(?![a-z]))|bearer|(?:token|key)(?![a-z]))"
)
_NAME = r"[\w.\-\"']"  # a name's characters (an option's, a variable's, a header's, a JSON key's)
_SECRET_NAME = re.compile(_SECRET, re.IGNORECASE)
# `NAME=` or `NAME:` with a secret NAME; tried only where a name starts, each name scanned once.
_PAIR = re.compile(rf"(?<!{_NAME})(?>{_NAME}*?{_SECRET}){_NAME}*+[=:]", re.IGNORECASE)
# The next three start with a literal, found by a fast scan; a lookbehind then checks that a word
# starts there. A secret option without its value (`--password`, `-token`); `bearer`; a -u/--user.
_OPTION = re.compile(rf"-(?<!\S-)(?>[^\s=:]*?{_SECRET})[^\s=:]*+(?!\S)", re.IGNORECASE)
_BEARER = re.compile(r"bearer(?<!\Sbearer)\s", re.IGNORECASE)
_USER = re.compile(r"-(?<!\S-)(?:(?:-user|-proxy-user|[uU])(?:=|\s++)|[uU])(?=\S*?[:%])")
_URL_USERINFO = re.compile(r"://(?:[^\s/:@]*+:)?(?=[^\s/@]*+@)")  # ends where the hidden part starts
_VALUE_START = re.compile(r"\S")
_USER_OPTIONS = frozenset({"-u", "-U", "--user", "--proxy-user"})
_MAX_URLS = 16  # in one argument; the rest of one with more is hidden
# The short option that takes a password, per tool (its value attached or next).
_TOOLS = {
    "-p": (
        "mysql mysqldump mysqladmin mysqlimport mysqlshow mysqlcheck mysqlpump mariadb mariadb-dump "
        "mariadb-admin mariadb-import mariadb-check mongo mongosh mongodump mongorestore mongoexport "
        "mongoimport sshpass 7z 7za 7zr"
    ),
    "-a": "redis-cli keydb-cli valkey-cli",
    "-w": "ldapsearch ldapadd ldapmodify ldapdelete ldapwhoami ldappasswd ldapcompare",
    "-P": "zip unzip sqlcmd",
}
_TOOL_FLAGS = {tool: flag for flag, tools in _TOOLS.items() for tool in tools.split()}
# A tool's name as a word (or a path's last part) in an argument with spaces, per flag.
_TOOL_WORDS = {
    flag: [re.compile(rf"{re.escape(tool)}(?<![^\s/]{re.escape(tool)})(?!\S)") for tool in tools.split()]
    for flag, tools in _TOOLS.items()
}
# What each group's names contain: a fast test before its expression.
_TOOL_HINTS = {
    "-p": ("mysql", "mariadb", "mongo", "sshpass", "7z"),
    "-a": ("-cli",),
    "-w": ("ldap",),
    "-P": ("zip", "sqlcmd"),
}
_FLAG_VALUES = {flag: re.compile(rf"{flag}(?<!\S{flag})\s*+") for flag in _TOOLS}  # ends at the value
_NONE, _VALUE, _USERPASS = 0, 1, 2  # what the next argument is: nothing special, a secret, USER:PASSWORD


def secret_name(name: str) -> bool:
    """Whether an option's, a variable's or a header's name says that its value is a secret."""
    return _SECRET_NAME.search(name) is not None


def _maybe_secret(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _userpass(text: str) -> bool:
    """Whether a `-u` value is USER:PASSWORD (smbclient's USER%PASSWORD); a URL has rules of its own."""
    return (":" in text or "%" in text) and "://" not in text


def _url_userinfo(word: str) -> str:
    """`word` with the password (the whole userinfo when it has no colon) of each URL hidden."""
    parts: list[str] = []
    kept = 0
    for _ in range(_MAX_URLS):
        found = _URL_USERINFO.search(word, kept)
        if found is None:
            return "".join(parts) + word[kept:]
        authority_end = word.find("/", found.end())
        at = word.rfind("@", found.end(), authority_end if authority_end >= 0 else len(word))
        parts += (word[kept : found.end()], MASK)
        kept = at
    return "".join(parts) + (word[kept:] if _URL_USERINFO.search(word, kept) is None else MASK)


class _Scan:
    """One argv's redaction: whether the next argument is a secret, and which tools' flags apply."""

    __slots__ = ("pending", "tool_flags")

    def __init__(self) -> None:
        self.pending = _NONE
        self.tool_flags: frozenset[str] = frozenset()

    def argument(self, arg: str) -> str:
        if self.pending == _USERPASS:
            self.pending = _NONE
            if _userpass(arg):
                return MASK
        if self.pending:  # the whole argument is the value, spaces and all
            self.pending = _NONE
            self._after(arg)
            if not self.pending and not arg.strip():
                self.pending = _VALUE  # an empty value: the next argument may be the secret
            return MASK
        if _VALUE_START.search(arg) is None:
            return arg
        if arg.split(None, 1) == [arg]:  # one word (faster than a regular expression's scan)
            word, cut = self.word(arg)
            if cut is None:
                return word
            if cut < len(arg):
                return arg[:cut] + MASK
            self.pending = _VALUE  # `PASSWORD=` or `Authorization:` alone: its value comes next
            return arg
        return self._words(arg)

    def _words(self, arg: str) -> str:
        """An argument with spaces: from where its first secret starts, the rest is hidden."""
        cuts: list[int] = []
        lowered = arg.lower()
        if any(word in lowered for word in _SECRET_WORDS):  # each expression only where it can match
            matches = (
                _PAIR.search(arg) if "=" in arg or ":" in arg else None,
                _OPTION.search(arg) if "-" in arg else None,
                _BEARER.search(arg) if "bearer" in lowered else None,
            )
            cuts += (m.end() for m in matches if m)
        if "-u" in arg or "-U" in arg:
            cuts += (m.end() for m in [_USER.search(arg)] if m)
        if "://" in arg:
            cuts += (m.end() for m in [_URL_USERINFO.search(arg)] if m)
        starts = dict.fromkeys(self.tool_flags, 0)
        for flag, tools in _TOOL_WORDS.items():
            if flag not in starts and any(hint in arg for hint in _TOOL_HINTS[flag]):
                ends = [found.end() for tool in tools if (found := tool.search(arg))]
                if ends:
                    starts[flag] = min(ends)
        self.tool_flags = frozenset(starts)
        cuts += (m.end() for flag, at in starts.items() if (m := _FLAG_VALUES[flag].search(arg, at)))
        value = _VALUE_START.search(arg, min(cuts)) if cuts else None
        self._after(arg)
        if value is None:
            return arg
        return arg[: value.start()] + MASK

    def _after(self, arg: str) -> None:
        """Whether the argument's last word makes the next argument a secret."""
        words = arg.rsplit(None, 1)
        if words:
            _, cut = self.word(words[-1])
            if cut is not None and cut == len(words[-1]):
                self.pending = _VALUE

    def word(self, word: str) -> tuple[str, int | None]:
        """The word with its secrets hidden, and where the value of a secret `NAME=` or `NAME:` starts
        in it (None: none); sets `pending` when the next argument is a secret."""
        if word[:2] in self.tool_flags:
            if len(word) == 2:
                self.pending = _VALUE
                return word, None
            return word[:2] + MASK, None
        if not word.startswith("-"):
            flag = _TOOL_FLAGS.get(word[word.rfind("/") + 1 :])
            if flag is not None:
                self.tool_flags |= {flag}
        secretish = _maybe_secret(word)
        if secretish and ("=" in word or ":" in word) and (pair := _PAIR.search(word)):
            return word, pair.end()
        if "://" in word:
            word = _url_userinfo(word)
        if word.startswith("-") and len(word) > 1:
            name, equals, value = word.partition("=")
            if equals:
                if name in _USER_OPTIONS and _userpass(value):
                    return f"{name}={MASK}", None
            elif name[:2] in _USER_OPTIONS and len(name) > 2 and _userpass(name):
                return name[:2] + MASK, None  # -uUSER:PASSWORD
            elif secretish and secret_name(name):
                self.pending = _VALUE
            elif name in _USER_OPTIONS:
                self.pending = _USERPASS
        elif len(word) == 6 and word.lower() == "bearer":
            self.pending = _VALUE
        return word, None


@dataclass(frozen=True)
class Redactor:
    """Redacts argv entries; `enabled` False keeps them as they are (but for `secrets`)."""

    enabled: bool = True
    pattern: re.Pattern[str] | None = None
    secrets: frozenset[str] = field(default_factory=frozenset)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        return Redactor(self.enabled, self.pattern, self.secrets | {s for s in secrets if s})

    def argv(self, argv: Sequence[str]) -> tuple[str, ...]:
        """The argv with every secret replaced by MASK: as many entries as given."""
        out = list(argv)
        if self.enabled:
            scan = _Scan()
            out = [scan.argument(arg) for arg in out]
            if self.pattern is not None:
                out = [self.pattern.sub(self._masked, arg) for arg in out]
        return tuple(self._own(arg) for arg in out)

    def text(self, text: str) -> str:
        """A command line already joined by spaces (no argv at hand): each word redacted."""
        return " ".join(self.argv(text.split(" ")))

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
