"""What the dashboard's tests share: the shipped example applied in a temporary folder, a users
file, and `reconcile serve` as a real subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cli_process import reconcile

from helpers import SHIPPED_MANIFESTS

USER, SECRET = "ana", "s3cret-for-ana-0123"


@dataclass(frozen=True)
class Example:
    root: Path

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def state(self) -> Path:
        return self.root / "state" / "reconciler.duckdb"

    def args(self) -> list[str]:
        return ["--manifests", str(self.manifests), "--state", str(self.state)]

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        """`reconcile ARGS` on this example (manifest options after the command)."""
        done = reconcile(*args, *self.args(), cwd=self.root)
        assert done.returncode in ok, (done.stdout, done.stderr)
        return done

    def report(self, *command: str) -> Any:
        done = reconcile(*command, "--state", str(self.state), "-o", "json", cwd=self.root)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def copy_on_cdn(self, file: str) -> Path:
        return self.root / "state" / "platforms" / "cdn-primary" / file


def applied_example(root: Path, title: str | None = None) -> Example:
    """The shipped example copied under ``root`` and applied; ``title``: IMG-HERO-PROD's."""
    shutil.copytree(SHIPPED_MANIFESTS, root / "manifests")
    (root / "state").mkdir()
    if title is not None:
        assets = root / "manifests" / "assets.yaml"
        text = assets.read_text()
        assets.write_text(text.replace("title: Product Hero Image", f"title: {json.dumps(title)}"))
    example = Example(root)
    done = reconcile(*example.args(), cwd=root)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return example


def users_file(folder: Path, mode: int = 0o600) -> Path:
    path = folder / "users"
    path.write_text(f"# who may sign in\n{USER}:{SECRET}\n")
    path.chmod(mode)
    return path


def conflict_on_cdn(example: Example) -> int:
    """Change IMG-HERO-PROD's copy on the CDN behind the tool's back and run verify: the
    id of the conflict it opens."""
    copy = example.copy_on_cdn("media/images/hero_product.jpg")
    copy.write_bytes(copy.read_bytes() + b"edited on the platform")
    example.run("verify", ok=(0, 3))
    opened = example.report("conflicts")["conflicts"]
    assert [(c["asset"], c["platform"]) for c in opened] == [("IMG-HERO-PROD", "CDN-PRIMARY")]
    return int(opened[0]["id"])


def add_image(example: Example, code: str) -> None:
    """Declare a new image asset (a copy of the hero image, turned): its creates run at
    once, whatever the rules' schedules."""
    from PIL import Image

    with Image.open(example.manifests / "media" / "images" / "hero_product.jpg") as image:
        image.rotate(180).save(example.manifests / "media" / "images" / f"{code.lower()}.jpg")
    document = (
        f"---\napiVersion: mediasync/v1\nkind: Asset\nmetadata:\n  code: {code}\nspec:\n"
        f"  title: New {code}\n  asset_type: image\n  category: marketing\n"
        f"  file: media/images/{code.lower()}.jpg\n"
    )
    with open(example.manifests / "assets.yaml", "a") as assets:
        assets.write(document)


class Server:
    """`reconcile serve ... --port 0` in a subprocess: it prints where it listens."""

    def __init__(self, example: Example, *options: str) -> None:
        command = [sys.executable, "-m", "reconciler", "serve", *example.args(), "--port", "0"]
        self.proc = subprocess.Popen(
            [*command, *options],
            cwd=example.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert found, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.url = found[1]

    def get(self, path: str, **options: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **options)

    def stop(self) -> tuple[int, str]:
        """SIGTERM; its exit code and what it printed after its first line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def wait_for(check: Any, timeout: float = 30.0, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(step)
