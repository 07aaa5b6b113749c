"""The rows of one upload go in with ONE statement (counted at the database)."""

from __future__ import annotations

from pathlib import Path

from conftest import image_inserts, make_jpeg, record_statements
from imgress.app import build_service
from imgress.config import load_settings
from imgress.db.migrate import upgrade
from imgress.service import ImageService


class _Recorder:
    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, task: str, *ids: str) -> None:
        self.submitted.extend(ids)


def _stage(svc: ImageService, data: bytes, name: str):
    spool = svc.open_part()
    spool.write(data)
    return svc.check_part(spool, name)


def test_one_insert_for_a_whole_request(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    svc = build_service(settings).images
    recorder = _Recorder()
    svc.dispatcher = recorder  # record submissions instead of running them
    statements = record_statements(svc.repo.engine)
    job = svc.open_job("owner1", "req1")
    datas = [make_jpeg(32, 32, seed=s) for s in range(50)]
    parts = [_stage(svc, d, f"f{i}.jpg") for i, d in enumerate(datas)]
    parts.append(_stage(svc, datas[0], "again.jpg"))
    statements.clear()
    results = svc.store_parts("owner1", job, parts, list(range(len(parts))), "req1")
    inserts = image_inserts(statements)
    assert len(inserts) == 1
    assert [r.status for r in results].count("created") == 50
    assert results[-1].status == "duplicate" and results[-1].image.id == results[0].image.id
    assert len(recorder.submitted) == 50
