"""Settings come from GANCODEC_* variables, lists as plain separated strings, each documented with its default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.api.settings import ENV_PREFIX, Settings
from service.cli import main
from service.codec import DEFAULT_MAX_PIXELS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "service.md"


def test_defaults_need_no_environment():
    defaults = Settings.model_construct()
    assert defaults.model_dirs == [] and defaults.include_zoo and defaults.api_keys == []
    assert defaults.max_pixels == DEFAULT_MAX_PIXELS and defaults.concurrency == 1


def test_lists_are_separated_strings(monkeypatch, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("GANCODEC_MODEL_DIRS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}{os.pathsep}")
    monkeypatch.setenv("GANCODEC_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    monkeypatch.setenv("GANCODEC_THREADS", "2")
    configured = Settings()
    assert configured.model_dirs == [tmp_path / "a", tmp_path / "b"]
    options = configured.runtime_options
    assert options.providers == ("CUDAExecutionProvider", "CPUExecutionProvider") and options.intra_op_threads == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODEL_DIRS", "/no/such/dir"),
        ("CONCURRENCY", "0"),
        ("QUEUE_SIZE", "-1"),
        ("READ_TIMEOUT", "0"),
        ("HEADER_TIMEOUT", "0"),
        ("MAX_CONNECTIONS", "0"),
    ],
)
def test_bad_values_are_refused_at_start(monkeypatch, name, value):
    monkeypatch.setenv(ENV_PREFIX + name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_every_setting_is_documented_with_its_default():
    docs = DOCS.read_text()
    for name, field in Settings.model_fields.items():
        variable = ENV_PREFIX + name.upper()
        assert f"`{variable}`" in docs, f"docs/service.md does not document {variable}"
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{variable}`"))
        if field.default not in ([], None):
            shown = _shown(field.default)
            assert f"`{shown}`" in row, f"{variable}: its default {shown} is not in {row!r}"


def _shown(value: object) -> str:
    """A default as docs/service.md writes it: true/false, 30 rather than 30.0."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_serve_reports_bad_settings_on_one_line(monkeypatch, capsys):
    monkeypatch.setenv("GANCODEC_CONCURRENCY", "0")
    assert main(["serve", "--port", "8123"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gancodec: error: invalid settings: GANCODEC_CONCURRENCY: ")
