"""`lusd serve`: starts on loopback with a model folder; a bad model is one line, exit 1."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from lusd.cli import app
from tests.support.web import free_port, start_serve, stop_serve, wait_for_page


def test_serve_with_a_missing_model_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "nowhere")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "error:" in result.output


def test_serve_starts_on_loopback_and_stops_on_ctrl_c(tiny_model_dir, tmp_path):
    port = free_port()
    args = ["--model", str(tiny_model_dir), "--port", str(port), "--steps", "2"]
    process = start_serve(args, tmp_path)
    try:
        page = wait_for_page(port, process)
        assert page is not None and page.status_code == 200, process.poll()
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).json()
        assert config["title"].startswith("LUSD")
        assert list(tmp_path.glob("lusd-serve-*")), "uploads go to the app's own temp folder"
    finally:
        output = stop_serve(process)
    assert f"http://127.0.0.1:{port}" in output
    assert "Traceback" not in output and "error" not in output.lower()
    assert process.returncode == 0
    assert not list(tmp_path.glob("lusd-serve-*")), "the temp folder is removed on exit"
