"""`reconcile serve` without a browser: the JSON API and the pages over a real DuckDB state of
the shipped example (applied by real `reconcile` subprocesses), through Starlette's test
client, and the server itself as a subprocess. The figures are those of the report commands;
actions need a signed-in user and the session's CSRF token; output is escaped; the Host is
checked; nothing outside the media root is read."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from cli_process import one_error_line, reconcile
from dashboard_kit import (
    SECRET,
    USER,
    Example,
    Server,
    add_image,
    applied_example,
    conflict_on_cdn,
    users_file,
)
from PIL import Image
from starlette.testclient import TestClient

from reconciler import ops
from reconciler.web.app import create_app
from reconciler.web.context import Served

SCRIPT = "<script>alert('owned')</script>"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Example:
    """One applied example for the tests that only read."""
    return applied_example(tmp_path_factory.mktemp("web"), title=SCRIPT)


@pytest.fixture
def example(tmp_path: Path) -> Example:
    """An applied example of the test's own, for the tests that write."""
    return applied_example(tmp_path)


def client(example: Example, users: Path | None = None, read_only: bool = False) -> TestClient:
    from reconciler.web.security import read_users

    where = ops.Workspace(example.manifests, None, example.state, 10.0, None, "reconcile serve")
    found = read_users(users) if users else None
    return TestClient(create_app(Served(where, found, read_only)), base_url="http://127.0.0.1")


def signed_in(example: Example, read_only: bool = False) -> tuple[TestClient, str]:
    """A client signed in through the sign-in form; the session's CSRF token."""
    web = client(example, users_file(example.root), read_only)
    form = web.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    answer = web.post(
        "/login", data={"name": USER, "secret": SECRET, "csrf_token": token[1]},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    session = web.get("/api/session").json()
    assert session["user"] == USER and session["can_act"]
    return web, session["csrf_token"]


# -- the figures ------------------------------------------------------------------------------


def test_status_is_what_reconcile_status_prints(shared: Example) -> None:
    answer = client(shared).get("/api/status")
    assert answer.status_code == 200
    expected = shared.report("status")
    assert answer.json()["platforms"] == expected["platforms"]
    assert len(expected["platforms"]) == 6
    page = client(shared).get("/").text
    for platform in expected["platforms"]:
        card = page.split(f'data-platform="{platform["platform_code"]}"', 1)[1].split("</section>")[
            0
        ]
        for field in ("synced_assets", "up_to_date", "outdated", "failed", "conflicts"):
            assert f'data-field="{field}">{platform[field]}<' in card


def test_distribution_is_searched_sorted_and_paged(shared: Example) -> None:
    web = client(shared)
    everything = shared.report("report", "distribution")["assets"]
    first = web.get(
        "/api/distribution", params={"sort": "asset_code", "desc": "0", "limit": 2}
    ).json()
    assert first["total"] == len(everything) and len(first["assets"]) == 2
    codes = sorted(a["asset_code"] for a in everything)
    second = web.get(
        "/api/distribution", params={"sort": "asset_code", "desc": "0", "limit": 2, "offset": 2}
    ).json()
    assert [a["asset_code"] for a in first["assets"] + second["assets"]] == codes[:4]
    found = web.get("/api/distribution", params={"q": "hero_"}).json()
    assert found["total"] == 0
    found = web.get("/api/distribution", params={"q": "img-hero"}).json()
    assert [a["asset_code"] for a in found["assets"]] == ["IMG-HERO-PROD"]
    by_cdn = web.get("/api/distribution", params={"q": "primary cdn"}).json()
    assert by_cdn["total"] == sum("Primary CDN" in (a["platforms"] or "") for a in everything)
    assert web.get("/assets", params={"q": "img-hero"}).text.count('data-asset="') == 1
    bad = web.get("/api/distribution", params={"sort": "title; DROP TABLE x"})
    assert bad.status_code == 400 and "cannot sort by" in bad.json()["error"]
    assert web.get("/api/distribution", params={"limit": "many"}).status_code == 400


def test_the_asset_page_has_its_copies_explanation_events_and_thumbnail(shared: Example) -> None:
    web = client(shared)
    found = web.get("/api/assets/IMG-HERO-PROD").json()
    assert sorted(p["platform"] for p in found["placements"]) == [
        "CDN-PRIMARY", "S3-BACKUP", "SOCIAL-MEDIA",
    ]  # fmt: skip
    assert all(p["sync_status"] == "synced" and p["local_checksum"] for p in found["placements"])
    assert found["explanation"]["asset"]["code"] == "IMG-HERO-PROD"
    assert {e["event_type"] for e in found["events"]} >= {"upload_complete", "verification"}
    thumb = web.get(found["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) <= 320 and image.size[0] > 0
    page = web.get("/assets/IMG-HERO-PROD").text
    assert page.count('<tr data-platform="') == 3 and 'class="thumb"' in page
    missing = web.get("/api/assets/NO-SUCH-ASSET")
    assert missing.status_code == 404 and missing.json() == {
        "error": "there is no asset NO-SUCH-ASSET"
    }
    assert "Traceback" not in web.get("/assets/NO-SUCH-ASSET").text
    assert web.get("/thumbs/VID-TUTORIAL-01").status_code == 404  # a video has none


def test_a_title_with_a_script_renders_as_text(shared: Example) -> None:
    web = client(shared)
    for path in ("/assets", "/assets/IMG-HERO-PROD"):
        page = web.get(path).text
        assert SCRIPT not in page
        assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page
    assert "script-src 'self'" in web.get("/").headers["content-security-policy"]
    assert web.get("/api/assets/IMG-HERO-PROD").json()["asset"]["title"] == SCRIPT


def test_every_endpoint_of_the_openapi_description_answers(shared: Example) -> None:
    web = client(shared)
    described = web.get("/api/openapi.json").json()
    assert described["openapi"].startswith("3.")
    gets = [p for p, ops_ in described["paths"].items() if "get" in ops_ and "{" not in p]
    assert {"/api/status", "/api/distribution", "/api/jobs", "/api/events", "/api/plan"} <= set(
        gets
    )
    for path in gets:
        answer = web.get(path)
        assert answer.status_code == 200, (path, answer.text)
    plan = web.get("/api/plan").json()
    assert plan["summary"]["create"] == 0 and "No changes to make." in plan["markdown"]
    jobs = web.get("/api/jobs", params={"status": "completed"}).json()["jobs"]
    assert len(jobs) == 15 and all(j["status"] == "completed" for j in jobs)
    assert [j["job_code"] for j in jobs] == sorted((j["job_code"] for j in jobs), reverse=True)
    newest = web.get("/api/jobs", params={"limit": 2}).json()["jobs"]
    assert [j["job_code"] for j in newest] == [j["job_code"] for j in jobs[:2]]
    assert web.get("/api/jobs", params={"status": "nonsense"}).status_code == 400
    activity = web.get("/api/activity").json()["activity"]
    assert sum(row["completed"] for row in activity) == 15
    assert web.get("/").text.count('<rect class="ok"') == len(activity)


def test_a_request_for_another_host_is_refused(shared: Example) -> None:
    answer = client(shared).get("/api/status", headers={"host": "attacker.example"})
    assert answer.status_code == 400


def test_a_master_swapped_for_a_link_outside_the_media_root_has_no_thumbnail(
    example: Example, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jpg"
    master = example.manifests / "media" / "images" / "hero_product.jpg"
    outside.write_bytes(master.read_bytes())
    master.unlink()
    master.symlink_to(outside)
    assert client(example).get("/thumbs/IMG-HERO-PROD").status_code == 404
    master.unlink()
    master.write_bytes(b"not an image at all")
    assert client(example).get("/thumbs/IMG-HERO-PROD").status_code == 404


# -- acting -----------------------------------------------------------------------------------


def test_without_a_users_file_nothing_can_be_changed(example: Example) -> None:
    conflict = conflict_on_cdn(example)
    web = client(example)
    assert 'action="/conflicts/' not in web.get("/conflicts").text
    answer = web.post(f"/api/conflicts/{conflict}/resolve", json={"use": "source"})
    assert answer.status_code == 403 and "read-only" in answer.json()["error"]
    form = web.post(f"/conflicts/{conflict}/resolve", data={"use": "source"})
    assert form.status_code == 403
    assert example.report("conflicts")["conflicts"][0]["resolution"] == "pending"


def test_signing_in_is_needed_for_everything_with_a_users_file(example: Example) -> None:
    web = client(example, users_file(example.root))
    assert web.get("/api/status").status_code == 401
    assert web.get("/", follow_redirects=False).headers["location"] == "/login?next=/"
    assert web.get("/api/status", headers={"authorization": f"Bearer {SECRET}"}).status_code == 200
    assert (
        web.get("/api/status", headers={"authorization": "Bearer wrong-secret"}).status_code == 401
    )
    form = web.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    wrong = web.post("/login", data={"name": USER, "secret": "nope", "csrf_token": token[1]})
    assert wrong.status_code == 401 and SECRET not in wrong.text
    no_csrf = web.post("/login", data={"name": USER, "secret": SECRET})
    assert no_csrf.status_code == 401
    assert web.get("/api/status").status_code == 401
    used = web.post("/login", data={"name": USER, "secret": SECRET, "csrf_token": token[1]})
    assert used.status_code == 401  # a failed attempt used that token up
    token = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
    assert token
    for elsewhere in ("//attacker.example/", "/\\attacker.example/", "https://attacker.example/"):
        signed = web.post(
            "/login",
            params={"next": elsewhere},
            data={"name": USER, "secret": SECRET, "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/", elsewhere
        web.cookies.clear()
        token = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
        assert token
    signed = web.post(
        "/login",
        params={"next": "/assets?q=hero"},
        data={"name": USER, "secret": SECRET, "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert signed.headers["location"] == "/assets?q=hero"
    assert web.get("/api/status").status_code == 200


def test_a_conflict_is_resolved_by_the_signed_in_user_and_resynced(example: Example) -> None:
    sent = example.copy_on_cdn("media/images/hero_product.jpg").read_bytes()
    conflict = conflict_on_cdn(example)
    web, csrf = signed_in(example)
    page = web.get("/conflicts").text
    assert f'action="/conflicts/{conflict}/resolve"' in page and SECRET not in page
    refused = web.post(f"/conflicts/{conflict}/resolve", data={"use": "source"})
    assert refused.status_code == 403
    refused = web.post(
        f"/api/conflicts/{conflict}/resolve",
        json={"use": "source"},
        headers={"x-csrf-token": "x" * 32},
    )
    assert refused.status_code == 403
    assert example.report("conflicts")["conflicts"][0]["resolution"] == "pending"
    done = web.post(
        f"/conflicts/{conflict}/resolve",
        data={"use": "source", "note": "the CDN copy was edited by hand", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303
    (row,) = [c for c in example.report("conflicts", "--all")["conflicts"] if c["id"] == conflict]
    assert (row["resolution"], row["resolved_by"]) == ("use_source", USER)
    assert row["notes"].endswith("\nthe CDN copy was edited by hand")
    again = web.post(
        f"/api/conflicts/{conflict}/resolve", json={"use": "target"}, headers={"x-csrf-token": csrf}
    )
    assert again.status_code == 409 and "already resolved" in again.json()["error"]
    example.run()
    assert example.copy_on_cdn("media/images/hero_product.jpg").read_bytes() == sent


def test_sync_now_sends_one_copy_again_at_the_next_reconcile(example: Example) -> None:
    web = client(example, users_file(example.root))
    bearer = {"authorization": f"Bearer {SECRET}"}
    path = "/api/assets/IMG-HERO-PROD/platforms/CDN-PRIMARY/sync"
    answer = web.post(path, headers=bearer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["requested_by"] == USER
    events = web.get("/api/events", params={"asset": "IMG-HERO-PROD"}, headers=bearer).json()
    assert events["events"][0]["event_type"] == "resync_requested"
    assert (
        web.post("/api/assets/IMG-HERO-PROD/platforms/YOUTUBE/sync", headers=bearer).status_code
        == 409
    )
    done = example.run("--output", "json")
    jobs = json.loads(done.stdout)["jobs"]
    assert [(j["asset"], j["platform"], j["status"]) for j in jobs] == [
        ("IMG-HERO-PROD", "CDN-PRIMARY", "completed")
    ]


def test_read_only_refuses_even_a_signed_in_user(example: Example) -> None:
    conflict = conflict_on_cdn(example)
    web = client(example, users_file(example.root), read_only=True)
    bearer = {"authorization": f"Bearer {SECRET}"}
    assert web.get("/api/session", headers=bearer).json()["can_act"] is False
    answer = web.post(f"/api/conflicts/{conflict}/resolve", json={"use": "ignore"}, headers=bearer)
    assert answer.status_code == 403 and "--read-only" in answer.json()["error"]
    assert 'action="/conflicts/' not in web.get("/conflicts", headers=bearer).text


# -- the command ------------------------------------------------------------------------------


def test_serve_refuses_a_public_address_without_a_users_file(example: Example) -> None:
    line = one_error_line(reconcile("serve", *example.args(), "--host", "0.0.0.0"))
    assert "--auth-file" in line
    shared_users = users_file(example.root, mode=0o644)
    line = one_error_line(reconcile("serve", *example.args(), "--auth-file", str(shared_users)))
    assert "chmod 600" in line
    bad = example.root / "bad-users"
    bad.write_text("ana:short\n")
    bad.chmod(0o600)
    line = one_error_line(reconcile("serve", *example.args(), "--auth-file", str(bad)))
    assert f"{bad}:1:" in line


def test_serve_answers_beside_a_running_watch_and_stops_on_sigterm(example: Example) -> None:
    """A real server and a real `reconcile watch` on the same DuckDB file: every request while
    the watch applies a new asset is answered, and its jobs show up."""
    import subprocess
    import sys
    import time

    from dashboard_kit import wait_for

    server = Server(example)
    watch = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", *example.args(), "--debounce", "0.2"],
        cwd=example.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        before = len(server.get("/api/jobs").json()["jobs"])
        time.sleep(1.5)
        add_image(example, "IMG-NEW-1")
        answers: list[int] = []

        def grown() -> bool:
            for path in ("/api/jobs", "/api/status", "/", "/api/events"):
                answers.append(server.get(path).status_code)
            return len(server.get("/api/jobs").json()["jobs"]) > before

        assert wait_for(grown, timeout=60), "no new job appeared"
        assert set(answers) == {200}, answers
    finally:
        watch.terminate()
        watch.wait(timeout=20)
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err


def test_no_secret_reaches_a_page_or_an_answer(example: Example) -> None:
    key = (example.root / "state" / "keys" / "s3-backup.key").read_bytes().strip()
    web = client(example, users_file(example.root))
    bearer = {"authorization": f"Bearer {SECRET}"}
    for path in ("/", "/assets", "/assets/IMG-HERO-PROD", "/conflicts", "/jobs", "/events", "/plan",
                 "/api/status", "/api/assets/IMG-HERO-PROD", "/api/events", "/api/plan",
                 "/api/jobs", "/api/session"):  # fmt: skip
        body = web.get(path, headers=bearer).content
        assert SECRET.encode() not in body and key not in body, path
    assert os.stat(example.root / "users").st_mode & 0o077 == 0


# -- what an attacker tries -------------------------------------------------------------------


def test_signing_out_ends_the_session_even_for_a_kept_cookie(example: Example) -> None:
    web, csrf = signed_in(example)
    kept = dict(web.cookies)
    assert web.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert web.get("/api/session").status_code == 401
    web.cookies.clear()
    for name, value in kept.items():  # the cookie as it was before signing out
        web.cookies.set(name, value)
    assert web.get("/api/session").status_code == 401
    sync = "/api/assets/IMG-HERO-PROD/platforms/CDN-PRIMARY/sync"
    assert web.post(sync, headers={"x-csrf-token": csrf}).status_code == 401


def test_hostile_bodies_and_ids_are_one_line_refusals(example: Example) -> None:
    conflict = conflict_on_cdn(example)
    web = client(example, users_file(example.root))
    bearer = {"authorization": f"Bearer {SECRET}"}
    path = f"/api/conflicts/{conflict}/resolve"
    for body in (b'{"use": ["ignore"]}', b'{"use": {}}', b"[" * 100_000 + b"]" * 100_000,
                 b'"just text"', b"\xff\xfe", b'{"use": "source", "note": 5}'):  # fmt: skip
        answer = web.post(path, content=body, headers=bearer)
        assert answer.status_code == 400, (body[:20], answer.text)
        assert set(answer.json()) == {"error"}
    huge = web.post(path, content=b" " * (1 << 20), headers=bearer)
    assert huge.status_code == 400 and "KiB" in huge.json()["error"]
    for odd in ("%D9%A1", "1_0", "-1", "1.0"):  # an Arabic-Indic one, underscores, signs
        assert (
            web.post(
                f"/api/conflicts/{odd}/resolve", json={"use": "ignore"}, headers=bearer
            ).status_code
            == 404
        )
    assert example.report("conflicts")["conflicts"][0]["resolution"] == "pending"
    missing = web.get("/api/no-such-thing", headers=bearer)
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


def test_guessing_secrets_is_throttled(example: Example) -> None:
    web = client(example, users_file(example.root))
    codes = [
        web.get("/api/status", headers={"authorization": f"Bearer guess-{i:04d}"}).status_code
        for i in range(25)
    ]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
    right = web.get("/api/status", headers={"authorization": f"Bearer {SECRET}"})
    assert right.status_code == 429  # even the right secret waits: the guesser cannot tell


def test_a_busy_state_is_a_503_that_names_no_other_process(example: Example) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
         "time.sleep(60)", str(example.state)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        where = ops.Workspace(example.manifests, None, example.state, 0.5, None, "reconcile serve")
        web = TestClient(create_app(Served(where, None, False)), base_url="http://127.0.0.1")
        answer = web.get("/api/status")
        assert answer.status_code == 503
        assert "busy" in answer.json()["error"] and "duckdb" not in answer.json()["error"]
        assert str(holder.pid) not in answer.text
    finally:
        holder.kill()
        holder.wait()


def test_a_hostile_image_master_has_no_thumbnail(example: Example) -> None:
    master = example.manifests / "media" / "images" / "hero_product.jpg"
    head = master.read_bytes()[:600]
    master.write_bytes(head)  # a JPEG cut short after its headers
    assert client(example).get("/thumbs/IMG-HERO-PROD").status_code == 404
    master.write_bytes(b"GIF89a" + b"\xff" * 200)  # a GIF header over garbage
    assert client(example).get("/thumbs/IMG-HERO-PROD").status_code == 404
    master.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG cut short
    assert client(example).get("/thumbs/IMG-HERO-PROD").status_code == 404


def test_unusable_users_files_and_host_options_are_one_line(example: Example) -> None:
    def refused(*options: str) -> str:
        return one_error_line(reconcile("serve", *example.args(), *options))

    users = users_file(example.root)
    assert "--auth-file" in refused("--allowed-host", "media.example.com")
    assert "pattern" in refused("--allowed-host", "*", "--auth-file", str(users))
    assert "empty" in refused("--host", " ")
    twice = example.root / "twice"
    twice.write_text(f"{USER}:{SECRET}\n{USER}:another-secret-1\n")
    twice.chmod(0o600)
    assert f"{twice}:2:" in refused("--auth-file", str(twice))
    link = example.root / "link"
    link.symlink_to(users)
    assert "symlink" in refused("--auth-file", str(link))
    assert "not a regular file" in refused("--auth-file", str(example.root))
