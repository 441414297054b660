"""CI-native output: problems as markdown and as GitHub workflow commands, the step summary,
timestamps on JSON lines, git provenance in the reports, the colour decision, completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from planning import World

from reconciler.render.github import command, escape_data, escape_property
from reconciler.render.style import wants_color
from reconciler.watch import Log

REPO = Path(__file__).resolve().parents[1]
SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour or bold escape sequence
CLEAN_ENV = {"NO_COLOR": None, "FORCE_COLOR": None, "GITHUB_STEP_SUMMARY": None}

BROKEN = """apiVersion: mediasync/v1
kind: Platform
metadata:
  code: CDN
spec:
  platform_name: CDN
  platform_type: cdn
  driver: local
  target: out
  rate_limit_per_hour: "lots, 50%"
---
apiVersion: mediasync/v1
kind: Platform
metadata:
  code: CDN2
spec:
  platform_type: nonsense
"""
# (line, col) of each problem of BROKEN, as `reconcile validate` reports them
BROKEN_AT = [(10, 24), (16, 1), (16, 1), (17, 18)]

EMPTY_SET = """apiVersion: mediasync/v1
kind: AssetSet
metadata: {code: S}
spec:
  include: "nothing/**/*.mov"
  asset_type: video
  category: c
  code_template: 'V-{path}'
"""


def reconcile(
    *args: str, cwd: Path, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m reconciler ARGS` in a real subprocess, with the environment changed."""
    merged = {**os.environ, "PYTHONPATH": str(REPO)}
    for name, value in {**CLEAN_ENV, **(env or {})}.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=merged,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "a.yaml").write_text(BROKEN)
    return folder


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path).platform("CDN").rule("R-CDN", "CDN").asset("VID-A", b"a" * 1000)


# -- (a) markdown ------------------------------------------------------------------------------


@pytest.mark.parametrize("command_line", [["--dry-run"], ["plan"], ["validate"]])
def test_markdown_lists_the_problems_of_invalid_manifests_and_exits_1(
    tmp_path: Path, broken: Path, command_line: list[str]
) -> None:
    result = reconcile(*command_line, "--manifests", "manifests", "-o", "markdown", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("### Manifests invalid: 4 errors in 1 file")
    items = [line for line in lines if line.startswith("- ")]
    assert [item.split("`")[1] for item in items] == [
        f"manifests/a.yaml:{line}:{col}" for line, col in BROKEN_AT
    ]
    assert items[0] == (
        "- `manifests/a.yaml:10:24`: Platform CDN: spec.rate_limit_per_hour: must be a whole "
        "number, not the string 'lots, 50%'"
    )
    if command_line != ["validate"]:  # stderr as before: the problems and the error line
        assert result.stderr.splitlines()[-1].startswith("error: the manifests are invalid")
        assert "manifests/a.yaml:17:18: Platform CDN2: spec.platform_type" in result.stderr


def test_markdown_escapes_what_would_become_html(run, manifests) -> None:
    root = manifests({"a.yaml": BROKEN.replace('"lots, 50%"', '"<b>*x*</b>"')})
    result = run("validate", "--manifests", str(root), "-o", "markdown")
    assert result.exit_code == 1
    assert "not the string '\\<b\\>\\*x\\*\\</b\\>'" in result.stdout


def test_markdown_of_valid_manifests_says_so(run, world: World) -> None:
    world.manifests()
    result = run("validate", "--manifests", str(world.manifests_dir), "--media-root",
                 str(world.media), "-o", "markdown")  # fmt: skip
    assert result.exit_code == 0
    assert result.stdout.startswith("### Manifests valid: 1 platform, 1 asset, 1 sync rule")
    assert "No problems found." in result.stdout


# -- (b) GitHub workflow commands ------------------------------------------------------------


def test_validate_github_prints_one_error_command_per_problem(tmp_path: Path, broken) -> None:
    result = reconcile(
        "validate", "--manifests", str(broken), "--output", "github", cwd=tmp_path
    )  # an absolute --manifests: the paths are still relative to the working directory
    assert result.returncode == 1
    commands = [line for line in result.stdout.splitlines() if line.startswith("::")]
    where = re.compile(r"::error file=([^,]+),line=(\d+),col=(\d+)::")
    assert [where.findall(c)[0] for c in commands] == [
        ("manifests/a.yaml", str(line), str(col)) for line, col in BROKEN_AT
    ]
    assert commands[0].endswith(
        "::Platform CDN: spec.rate_limit_per_hour: must be a whole number, "
        "not the string 'lots, 50%25'"
    )
    assert result.stdout.splitlines()[-1].startswith("invalid: 4 errors in 1 file")
    counted = json.loads(
        reconcile("validate", "--manifests", str(broken), "-o", "json", cwd=tmp_path).stdout
    )
    assert len(commands) == len(counted["problems"])


def test_github_properties_are_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "odd,name:1.yaml").write_text(BROKEN)
    result = reconcile("validate", "-o", "github", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("::error file=manifests/odd%2Cname%3A1.yaml,line=10,col=24::")


def test_escaping_follows_the_workflow_command_rules() -> None:
    assert escape_data("50% a\r\nb: c, d") == "50%25 a%0D%0Ab: c, d"
    assert escape_property("50% a\r\nb: c, d") == "50%25 a%0D%0Ab%3A c%2C d"
    assert command("error", "x\ny", {"file": "a,b.yaml", "line": 3}) == (
        "::error file=a%2Cb.yaml,line=3::x%0Ay"
    )
    assert command("notice", "done") == "::notice::done"


def test_dry_run_github_annotates_problems_warnings_and_the_plan(run, world: World) -> None:
    world.manifests()
    (world.manifests_dir / "set.yaml").write_text(EMPTY_SET)
    result = run("--dry-run", *world.cli_args(), "-o", "github")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"::warning file=.*set\.yaml,line=\d+,col=\d+::AssetSet S: .*", lines[0])
    assert "matches no files" in lines[0]
    assert lines[-1].startswith("::notice title=reconcile plan::Plan: 1 to create")
    assert any("+ create" in line for line in lines)
    broken = world.manifests_dir / "all.yaml"
    broken.write_text(BROKEN)
    invalid = run("--dry-run", *world.cli_args(), "-o", "github")
    assert invalid.exit_code == 1
    assert sum(line.startswith("::error file=") for line in invalid.stdout.splitlines()) == 4


def test_apply_refuses_the_plan_formats(run, world: World) -> None:
    world.manifests()
    for fmt in ("github", "markdown"):
        result = run(*world.cli_args(), "-o", fmt)
        assert result.exit_code == 1
        assert f"--output {fmt} renders a plan; use it with --dry-run" in result.stderr
    assert not world.store.path.exists()


# -- (c) the step summary --------------------------------------------------------------------


@pytest.mark.parametrize("output", ["text", "json", "markdown"])
def test_a_dry_run_appends_its_markdown_plan_to_the_step_summary(
    run, world: World, tmp_path: Path, output: str
) -> None:
    world.manifests()
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    env = {**CLEAN_ENV, "GITHUB_STEP_SUMMARY": str(summary)}
    result = run("--dry-run", *world.cli_args(), "-o", output, env=env)
    assert result.exit_code == 0, result.output
    plain = run("--dry-run", *world.cli_args(), "-o", "markdown", env=CLEAN_ENV).stdout
    assert summary.read_text() == "# earlier step\n" + plain.rstrip("\n") + "\n\n"
    assert "| `+` | create | CDN | VID-A |" in summary.read_text()


def test_without_the_variable_nothing_is_written(run, world: World, tmp_path: Path) -> None:
    world.manifests()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run("--dry-run", *world.cli_args(), env={**CLEAN_ENV, "GITHUB_STEP_SUMMARY": ""})
    assert result.exit_code == 0
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_invalid_manifests_put_their_problems_in_the_step_summary(
    run, broken: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    env = {**CLEAN_ENV, "GITHUB_STEP_SUMMARY": str(summary)}
    result = run("--dry-run", "--manifests", str(broken), "--state", str(tmp_path / "s.db"),
                 env=env)  # fmt: skip
    assert result.exit_code == 1
    text = summary.read_text()
    assert text.startswith("### Manifests invalid: 4 errors in 1 file")
    assert text.count("\n- `") == 4


def test_an_unwritable_step_summary_is_one_error_line(tmp_path: Path, world: World) -> None:
    world.manifests()
    missing = tmp_path / "no" / "such" / "summary.md"
    result = reconcile("--dry-run", *world.cli_args(), cwd=tmp_path,
                       env={"GITHUB_STEP_SUMMARY": str(missing)})  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot append the plan to GITHUB_STEP_SUMMARY ({missing}): "
        "No such file or directory"
    ]


# -- (d) timestamps on JSON lines ------------------------------------------------------------


def iso_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_jsonl_events_carry_an_iso_utc_time(run, world: World) -> None:
    world.manifests()
    before = datetime.now(UTC) - timedelta(seconds=1)
    result = run(*world.cli_args(), "-o", "jsonl")
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert result.exit_code == 0, result.output
    *events, closing = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["event_type"] for e in events} >= {"upload_complete", "verification"}
    assert closing["summary"]["completed"] == 1
    times = [iso_utc(e["time"]) for e in [*events, closing]]
    assert all(before <= t <= after for t in times)
    assert times == sorted(times)


def test_watch_json_log_lines_carry_an_iso_utc_time() -> None:
    lines: list[str] = []
    before = datetime.now(UTC).replace(microsecond=0)
    Log(lines.append, "json")("cycle", "done", changes=0)
    (line,) = lines
    record = json.loads(line)
    assert before <= iso_utc(record["time"]) <= datetime.now(UTC)
    assert record["event"] == "cycle"


# -- (e) git provenance in jobs and events ---------------------------------------------------


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def column(text: str, name: str) -> list[str]:
    """The cells of column ``name`` of a terminal table."""
    head, *rows = text.splitlines()
    start = head.index(name)
    return [row[start:].split()[0] if row[start:].strip() else "" for row in rows]


def test_jobs_and_events_show_the_commit_short_in_text_and_full_in_json(
    run, world: World, tmp_path: Path
) -> None:
    world.manifests()
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "manifests", "media")
    git(tmp_path, "commit", "-qm", "manifests")
    head = git(tmp_path, "rev-parse", "HEAD")
    state = ["--state", str(world.store.path)]
    assert run(*world.cli_args()).exit_code == 0
    world.asset("VID-B", b"b" * 10).manifests()  # uncommitted: the next run is dirty
    assert run(*world.cli_args()).exit_code == 0

    jobs = json.loads(run("jobs", *state, "-o", "json").stdout)["jobs"]
    assert [(j["asset"], j["git_commit"], j["git_dirty"]) for j in jobs] == [
        ("VID-A", head, False),
        ("VID-B", head, True),
    ]
    text = run("jobs", *state).stdout
    assert column(text, "commit") == [head[:7], head[:7] + "+dirty"]
    assert "git_dirty" not in text and head not in text

    events = json.loads(run("events", *state, "-o", "json").stdout)["events"]
    assert {(e["git_commit"], e["git_dirty"]) for e in events if e["asset"]} == {
        (head, False),
        (head, True),
    }
    assert set(column(run("events", *state).stdout, "commit")) >= {head[:7], head[:7] + "+dirty"}
    csv_head = run("jobs", *state, "-o", "csv").stdout.splitlines()[0]
    assert csv_head.endswith(",git_commit,git_dirty")


def test_outside_git_the_commit_column_is_empty(run, world: World) -> None:
    world.manifests()
    assert run(*world.cli_args()).exit_code == 0
    state = ["--state", str(world.store.path)]
    (job,) = json.loads(run("jobs", *state, "-o", "json").stdout)["jobs"]
    assert job["git_commit"] is None
    assert column(run("jobs", *state).stdout, "commit") == [""]


# -- (f) colour --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "env", "isatty", "expected"),
    [
        ("auto", {}, True, True),
        ("auto", {}, False, False),
        ("auto", {"NO_COLOR": "1"}, True, False),
        ("auto", {"NO_COLOR": ""}, True, True),  # empty: not set (no-color.org)
        ("auto", {"FORCE_COLOR": "1"}, False, True),
        ("auto", {"FORCE_COLOR": ""}, False, False),
        ("auto", {"NO_COLOR": "1", "FORCE_COLOR": "1"}, False, False),
        ("always", {"NO_COLOR": "1"}, False, True),
        ("never", {"FORCE_COLOR": "1"}, True, False),
    ],
)
def test_the_colour_decision(
    choice: str, env: dict[str, str], isatty: bool, expected: bool
) -> None:
    assert wants_color(choice, env, isatty) is expected


@pytest.mark.parametrize(
    ("options", "env", "coloured"),
    [
        ([], {}, False),
        ([], {"FORCE_COLOR": "1"}, True),
        ([], {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
        (["--color", "always"], {"NO_COLOR": "1"}, True),
        (["--color", "never"], {"FORCE_COLOR": "1"}, False),
    ],
)
def test_validate_and_reports_follow_color_and_the_environment(
    tmp_path: Path, broken: Path, options: list[str], env: dict[str, str], coloured: bool
) -> None:
    validated = reconcile(*options, "validate", cwd=tmp_path, env=env)
    assert validated.returncode == 1
    assert bool(SGR.search(validated.stdout)) is coloured
    assert SGR.sub("", validated.stdout).splitlines()[0].startswith("manifests/a.yaml:10:24: ")
    state = str(tmp_path / "state.db")
    assert reconcile("state", "load-sample", "--state", state, cwd=tmp_path).returncode == 0
    status = reconcile(*options, "status", "--state", state, cwd=tmp_path, env=env)
    assert status.returncode == 0
    assert bool(SGR.search(status.stdout)) is coloured
    assert SGR.sub("", status.stdout).startswith("platform_code")


def on_a_terminal(*args: str, cwd: Path, env: dict[str, str | None]) -> str:
    """What `reconcile ARGS` writes to stdout when stdout is a terminal (a pty)."""
    import pty

    merged = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    for name, value in {**CLEAN_ENV, **env}.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd, env=merged, stdout=follower, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    process.wait(timeout=120)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    ("options", "env", "coloured"),
    [
        ([], {}, True),
        ([], {"NO_COLOR": "1"}, False),
        (["--color", "never"], {}, False),
    ],
)
def test_on_a_terminal_colour_is_on_unless_turned_off(
    tmp_path: Path, broken: Path, options: list[str], env: dict[str, str | None], coloured: bool
) -> None:
    out = on_a_terminal(*options, "validate", cwd=tmp_path, env=env)
    assert "manifests/a.yaml:10:24" in SGR.sub("", out)
    assert bool(SGR.search(out)) is coloured


def test_the_live_progress_of_an_apply_follows_color_and_no_color(
    tmp_path: Path, world: World
) -> None:
    runs = [
        (["--color", "never"], {}, False),
        ([], {"NO_COLOR": "1"}, False),
        (["--color", "always"], {"NO_COLOR": "1"}, True),
        ([], {}, True),
    ]
    for n, (options, env, coloured) in enumerate(runs):
        world.asset(f"VID-{n}", bytes([n]) * 100).manifests()  # one change per run
        out = on_a_terminal(*options, *world.cli_args(), cwd=tmp_path, env=env)
        assert "Apply R" in out and " completed, 0 failed" in out, out
        assert bool(SGR.search(out)) is coloured, (options, env, repr(out[:400]))


# -- (g) completion ----------------------------------------------------------------------------


def test_shell_completion_works_as_documented(tmp_path: Path) -> None:
    docs = (REPO / "docs" / "commands.md").read_text()
    assert 'eval "$(_RECONCILE_COMPLETE=bash_source reconcile)"' in docs
    script = reconcile(cwd=tmp_path, env={"_RECONCILE_COMPLETE": "bash_source"})
    assert script.returncode == 0
    assert "_reconcile_completion()" in script.stdout
    words = reconcile(
        cwd=tmp_path,
        env={"_RECONCILE_COMPLETE": "bash_complete", "COMP_WORDS": "reconcile val",
             "COMP_CWORD": "1"},
    )  # fmt: skip
    assert "plain,validate" in words.stdout.splitlines()
