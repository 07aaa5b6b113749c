"""Upload jobs: progress document and server-sent events."""

from __future__ import annotations

import httpx

from conftest import Server, make_jpeg, upload
from imgress import sse


def _events(response: httpx.Response) -> list[tuple[str, dict]]:
    return list(sse.parse(response.iter_lines()))


def test_job_progress_and_events(server: Server) -> None:
    files = [(f"j{i}.jpg", make_jpeg(400, 300, seed=600 + i)) for i in range(4)]
    files.append(("broken.jpg", make_jpeg(seed=700)[:-200] + b"\xff\xd9"))  # fails in decode
    with server.client() as c:
        r = upload(c, *files)
        job_id = r.json()["job_id"]
        with c.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream)
        job = c.get(f"/v1/jobs/{job_id}").json()
    items = [e for e in events if e[0] == "item"]
    assert len(items) == job["total"] == len([i for i in r.json()["items"] if i["image"]])
    assert events[-1][0] == "end" and events[-1][1]["status"] in ("done", "failed")
    assert job["status"] == "done" and job["kind"] == "upload"
    assert job["done"] + job["failed"] == job["total"]
    assert {i["image_id"] for i in job["items"]} == {d["image_id"] for _, d in items}


def test_failed_decode_ends_failed_with_code(server: Server) -> None:
    good = make_jpeg(400, 300, seed=800)
    # Baseline data relabelled as a lossless (SOF3) frame: the header reads at upload,
    # the decode fails in the worker.
    broken = good.replace(b"\xff\xc0", b"\xff\xc3", 1)
    with server.client() as c:
        items = upload(c, ("broken.jpg", broken), ("good.jpg", good)).json()["items"]
    assert [i["status"] for i in items] == ["created", "created"]
    broken_rec, good_rec = server.wait_finished([i["image"]["id"] for i in items])
    assert good_rec["status"] == "ready"
    assert broken_rec["status"] == "failed"
    assert broken_rec["error"]["code"] == "decode_failed"
    assert broken_rec["variants"] == {}


def test_unknown_job_is_404(server: Server) -> None:
    with server.client() as c:
        r = c.get("/v1/jobs/job_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
