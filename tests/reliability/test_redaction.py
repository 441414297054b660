"""Defect 8: credentials echoed back are never recorded or printed. A platform that quotes the
rejected API key in its error, and a bearer token holding a newline (which requests quotes in
its InvalidHeader error), are run through every command and output format; the secret, in any
of the forms it could be echoed in, appears in no output, no event, no job row and no byte of
the state file."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from apiservers import FakePlatforms
from planning import World

ECHOED = "PLANTED-echoed-key-" + uuid.uuid4().hex
NEWLINE = f"PLANTED-line-one-{uuid.uuid4().hex}\nPLANTED-line-two-{uuid.uuid4().hex}"


def forms(secret: str) -> list[bytes]:
    """The secret as a platform, a library or an encoder might show it."""
    raw = secret.encode()
    found = [raw, base64.b64encode(raw), quote(secret, safe="").encode()]
    found += [repr(secret)[1:-1].encode()]
    found += [line.encode() for line in secret.splitlines()]
    return found


def leaks(data: bytes | str) -> list[bytes]:
    blob = data.encode() if isinstance(data, str) else data
    return [f for s in (ECHOED, NEWLINE) for f in forms(s) if f in blob]


@pytest.fixture
def fake() -> Iterator[FakePlatforms]:
    server = FakePlatforms().start()
    server.echo_key = True
    yield server
    server.stop()


@pytest.mark.slow
def test_echoed_and_quoted_credentials_appear_nowhere(
    tmp_path: Path, fake: FakePlatforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHO_TEST_KEY", ECHOED)
    monkeypatch.setenv("NEWLINE_TEST_TOKEN", NEWLINE)
    world = World(tmp_path)
    world.platform("CDN", driver="http", api_endpoint=f"{fake.url}/cdn", auth_type="api_key",
                   auth={"secret_env": "ECHO_TEST_KEY"}, target=None)  # fmt: skip
    world.platform("HUB", driver="http", api_endpoint=f"{fake.url}/cdn", auth_type="bearer",
                   auth={"secret_env": "NEWLINE_TEST_TOKEN"}, target=None)  # fmt: skip
    world.rule("R-CDN", "CDN").rule("R-HUB", "HUB")
    world.asset("VID-A", b"a" * 3000)
    world.manifests()
    state = str(world.store.path)

    def reconcile(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout + done.stderr

    outputs = []
    for fmt in ("text", "json", "jsonl"):
        outputs.append(reconcile(*world.cli_args(), "-o", fmt))
    assert "is not valid" in outputs[0] and "[REDACTED]" in outputs[0]  # it was echoed
    outputs.append(reconcile("verify", *world.cli_args(), "-o", "json"))
    for command in (["jobs"], ["events", "--limit", "1000"], ["status"], ["conflicts", "--all"]):
        for fmt in ("text", "json", "csv"):
            outputs.append(reconcile(*command, "--state", state, "-o", fmt))
    for output in outputs:
        assert leaks(output) == [], output
    stored = b"".join(p.read_bytes() for p in world.store.path.parent.rglob("*") if p.is_file())
    assert leaks(stored) == []
