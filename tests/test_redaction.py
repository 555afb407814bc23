"""Secrets never leave in a command line: the rules, the agent's own token, and a real process."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from wattprobe.sources.identity.redaction import MASK, Redactor
from wattprobe.sources.procfs import ProcfsReader, key_pid


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mysql", "-uroot", "-pS3cret", "db"], ["mysql", "-uroot", f"-p{MASK}", "db"]),
        (["mysqldump", "-p", "S3cret", "db"], ["mysqldump", "-p", MASK, "db"]),
        (["sshpass", "-pS3cret", "ssh", "host"], ["sshpass", f"-p{MASK}", "ssh", "host"]),
        (["tar", "-pcf", "x.tar", "dir"], ["tar", "-pcf", "x.tar", "dir"]),  # -p is no password to tar
        (["app", "--password", "S3cret", "--port", "80"], ["app", "--password", MASK, "--port", "80"]),
        (["app", "--db-password=S3cret"], ["app", f"--db-password={MASK}"]),
        (["app", "--token=abc", "--api-key", "k"], ["app", f"--token={MASK}", "--api-key", MASK]),
        (["app", "-secret", "x"], ["app", "-secret", MASK]),
        (["openssl", "enc", "--pass", "pass:x"], ["openssl", "enc", "--pass", MASK]),
        (
            ["env", "DB_PASSWORD=S3cret", "AWS_SECRET_ACCESS_KEY=k", "HOME=/root"],
            ["env", f"DB_PASSWORD={MASK}", f"AWS_SECRET_ACCESS_KEY={MASK}", "HOME=/root"],
        ),
        (["curl", "https://bob:S3cret@example.com/x"], ["curl", f"https://bob:{MASK}@example.com/x"]),
        (["psql", "postgres://u:pw@db:5432/x"], ["psql", f"postgres://u:{MASK}@db:5432/x"]),
        (["python3", "train.py", "--epochs", "3"], ["python3", "train.py", "--epochs", "3"]),
    ],
)
def test_the_default_rules(argv, expected):
    assert Redactor().argv(argv) == tuple(expected)


def test_own_secrets_a_pattern_and_off():
    redactor = Redactor(pattern=re.compile(r"session=(\w+)")).with_secrets({"tok-123"})
    argv = ["wattprobe", "warp10", "-t", "tok-123", "--note", "session=abc;x"]
    assert redactor.argv(argv) == ("wattprobe", "warp10", "-t", MASK, "--note", f"session={MASK};x")
    off = Redactor(enabled=False).with_secrets({"tok-123"})
    assert off.argv(["mysql", "-pS3cret", "-t", "tok-123"]) == ("mysql", "-pS3cret", "-t", MASK)


def test_a_real_process_is_read_redacted():
    secret = "hunter2-9d1f"
    code = "import sys; sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", code, "--password", secret, f"API_TOKEN={secret}"], stdin=subprocess.PIPE
    ) as process:
        reader = ProcfsReader()
        try:
            _, tasks = reader.scan()
            key = next(k for k in tasks if key_pid(k) == process.pid)
            info = reader.process(key)[0]
        finally:
            reader.close()
            process.stdin.close()
    assert secret not in info.cmdline and secret not in " ".join(info.argv)
    assert info.argv[-3:] == ("--password", MASK, f"API_TOKEN={MASK}")
