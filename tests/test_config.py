"""Settings: environment and flags, one readable line per bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgress.config import SettingsError, load_settings


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("IMGRESS_MAX_PARTS", "12")
    monkeypatch.setenv("IMGRESS_VARIANTS", "small:100x100, big:800x600")
    s = load_settings(data_dir=tmp_path, port=9000)
    assert s.max_parts == 12 and s.port == 9000 and s.max_pixels == 100_000_000
    assert [(p.name, p.width, p.height) for p in s.presets] == [
        ("small", 100, 100), ("big", 800, 600)]
    assert s.resolved_database_url.endswith("imgress.db")


def test_every_bad_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGRESS_PORT", "http")
    monkeypatch.setenv("IMGRESS_MAX_PIXELS", "-5")
    monkeypatch.setenv("IMGRESS_VARIANTS", "thumb:big")
    monkeypatch.setenv("IMGRESS_API_KEYS", "short")
    with pytest.raises(SettingsError) as err:
        load_settings()
    lines = err.value.lines
    assert len(lines) == 4
    assert any(ln.startswith("invalid IMGRESS_PORT") for ln in lines)
    assert any(ln.startswith("invalid IMGRESS_MAX_PIXELS") for ln in lines)
    assert any("NAME:WIDTHxHEIGHT" in ln for ln in lines)
    assert not any("short" in ln for ln in lines)  # never echo a key


def test_unknown_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError):
        load_settings(max_partz=3)


def test_cli_prints_errors_without_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "imgress", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("imgress: invalid IMGRESS_PORT")
    assert "Traceback" not in proc.stderr
