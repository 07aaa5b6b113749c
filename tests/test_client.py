"""The Python client and the upload CLI against a real server, also through a flaky proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import KEY, FlakyProxy, Server, make_jpeg
from imgress.client import Client


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(10):
        (folder / f"p{i:02}.jpg").write_bytes(make_jpeg(120, 90, seed=3000 + i))
    (folder / "sub" / "deep.png").write_bytes(make_jpeg(50, 50, seed=3100, fmt="PNG"))
    (folder / "notes.txt").write_text("not an image and not picked up")
    (folder / "fake.jpg").write_bytes(b"plain text posing as a photo")
    return folder


@pytest.fixture
def flaky(server: Server) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(server.base_url)
    yield proxy
    proxy.close()


def test_upload_many_survives_503_and_429(server: Server, flaky: FlakyProxy, photos: Path
                                          ) -> None:
    paths = sorted(p for p in photos.rglob("*") if p.suffix in (".jpg", ".png"))
    client = Client(flaky.url, KEY, concurrency=4, commit_batch=100, backoff=0.01)
    results = client.upload_many(paths)
    assert [r.path for r in results] == paths
    by_status = Counter(r.status for r in results)
    assert by_status == {"created": 11, "rejected": 1}
    assert next(r for r in results if r.path.name == "fake.jpg").error["code"] == \
        "unsupported_type"
    assert flaky.seen["PUT"] > flaky.forwarded["PUT"]  # puts really were refused first
    assert flaky.forwarded["POST commit"] >= 2  # the answered-503 commit was retried
    ids = [r.image["id"] for r in results if r.image]
    assert len(set(ids)) == 11  # nothing committed twice
    with server.client() as c:
        shas = [c.get(f"/v1/images/{i}").json()["sha256"] for i in ids]
        listed = c.get("/v1/images", params={"limit": 500}).json()["items"]
    assert sorted(i["sha256"] for i in listed if i["sha256"] in shas) == sorted(shas)


def test_failures_are_reported_not_dropped(server: Server, photos: Path) -> None:
    proxy = FlakyProxy(server.base_url, always_fail=True)
    try:
        paths = sorted(photos.glob("p0*.jpg"))[:3]
        results = Client(proxy.url, KEY, retries=2, backoff=0.01).upload_many(paths)
    finally:
        proxy.close()
    assert [r.status for r in results] == ["failed"] * 3
    assert all(r.error and r.error["code"] for r in results)


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgress", "upload", "--server", server.base_url, "--json",
         *args], capture_output=True, text=True, timeout=120,
        env={"IMGRESS_KEY": KEY, "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("mode", ["--direct", "--multipart"])
def test_cli_walks_folders_and_reports(server: Server, photos: Path, mode: str) -> None:
    proc = _cli(server, mode, "--concurrency", "3", str(photos))
    assert proc.returncode == 1, proc.stderr  # fake.jpg is rejected
    out = json.loads(proc.stdout)
    assert sum(out["summary"].values()) == 12  # 10 jpg + deep.png + fake.jpg, no .txt
    assert out["summary"]["rejected"] == 1 and out["summary"]["failed"] == 0
    assert out["summary"]["created"] + out["summary"]["duplicate"] == 11
    assert any(f["path"].endswith("sub/deep.png") for f in out["files"])


def test_cli_exit_zero_and_no_recursion(server: Server, photos: Path) -> None:
    (photos / "fake.jpg").unlink()
    proc = _cli(server, "--no-recursive", str(photos))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert sum(out["summary"].values()) == 10
    assert not any("deep.png" in f["path"] for f in out["files"])
