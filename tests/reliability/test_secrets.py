"""Secrets are referenced, never stored or printed; SQL never carries values in its text."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import duckdb
import pytest
from planning import World

from helpers import REPO

AWS_SECRET = "PLANTED-aws-secret-" + uuid.uuid4().hex
ENV_SECRET = "PLANTED-env-secret-" + uuid.uuid4().hex
FILE_SECRET = "PLANTED-file-secret-" + uuid.uuid4().hex
SECRETS = (AWS_SECRET, ENV_SECRET, FILE_SECRET)


def found_in(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


@pytest.mark.slow
def test_planted_secrets_appear_nowhere(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "partner.key"
    secret_file.write_text(FILE_SECRET + "\n")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "CDN_API_KEY": ENV_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = f"secrets-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)

    world = World(tmp_path)
    world.platform("CDN", auth_type="api_key", auth={"secret_env": "CDN_API_KEY"})
    world.platform("DAM", auth_type="api_key", auth={"secret_file": str(secret_file)})
    world.platform(
        "S3",
        driver="s3",
        target=None,
        bucket=bucket,
        endpoint_url=s3_endpoint,
        auth_type="aws_signature",
    )
    for code in ("CDN", "DAM", "S3"):
        world.rule(f"R-{code}", code)
    world.asset("VID-A", b"a" * 3000).asset("VID-B", b"b" * 3000)
    world.manifests()
    state = str(world.store.path)

    def reconcile(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout + done.stderr

    outputs = [
        reconcile(
            "validate",
            "--manifests",
            str(world.manifests_dir),
            "--media-root",
            str(world.media),
            "-o",
            fmt,
        )
        for fmt in ("text", "json")
    ]
    for fmt in ("text", "json", "markdown"):
        outputs.append(reconcile("--dry-run", *world.cli_args(), "-o", fmt))
    outputs.append(reconcile(*world.cli_args(), "-o", "jsonl"))
    (world.media / "vid-a.mp4").write_bytes(b"changed")
    outputs.append(reconcile(*world.cli_args(), "-o", "text"))
    outputs.append(reconcile("verify", *world.cli_args(), "-o", "json"))
    outputs.append(reconcile("explain", "VID-A", *world.cli_args(), "-o", "json"))
    for command in (
        ["status"],
        ["report", "distribution"],
        ["events", "--limit", "1000"],
        ["jobs"],
        ["conflicts", "--all"],
    ):
        for fmt in ("text", "json", "csv"):
            outputs.append(reconcile(*command, "--state", state, "-o", fmt))
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "watch",
            *world.cli_args(),
            "--log-format",
            "json",
            "--debounce",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    watch.send_signal(signal.SIGTERM)
    watch_out, watch_err = watch.communicate(timeout=20)
    outputs.append(watch_out + watch_err)
    assert '"event": "cycle"' in watch_out

    assert all(found_in(text) == [] for text in outputs), [found_in(t) for t in outputs]
    for path in world.store.path.parent.iterdir():  # the state file, its WAL, its lock
        assert found_in(path.read_bytes()) == [], path
    con = duckdb.connect(state, read_only=True)
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    ]
    for table in tables:
        dump = json.dumps(con.execute(f"SELECT * FROM {table}").fetchall(), default=str)
        assert found_in(dump) == [], table
    con.close()
    events = json.loads(reconcile("events", "--state", state, "-o", "json", "--limit", "1000"))[
        "events"
    ]
    assert len(events) > 10  # the log is not empty: there was something to leak into


# -- SQL takes values as parameters -------------------------------------------------------------

# Names whose values may be spliced into SQL text: table and column identifiers chosen by the
# code itself, and SQL fragments built only from them. Never a value from a manifest or a user.
IDENTIFIERS = {
    "table",
    "key",
    "names",
    "picks",
    "unnests",
    "staged",
    "sets",
    "missing",
    "spec",
    "name",
    "types[key]",
    "', '.join(columns)",
    "rows",  # a WHERE clause constant of reconciler/store/copying.py (SNAPSHOT_ROWS)
}


def sql_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("execute", "sql")
        and node.args
    ]


def test_sql_takes_values_as_parameters() -> None:
    spliced: list[str] = []
    checked = 0
    for path in sorted((REPO / "reconciler").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in sql_calls(tree):
            checked += 1
            first = call.args[0]
            for node in ast.walk(first):
                if isinstance(node, ast.FormattedValue):
                    source = ast.unparse(node.value)
                    if source not in IDENTIFIERS:
                        spliced.append(f"{path.name}:{call.lineno}: {{{source}}}")
    assert checked > 40
    assert spliced == [], "SQL text built from values instead of parameters: " + str(spliced)
