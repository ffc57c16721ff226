"""The served web app through its API (gradio_client) and raw HTTP: edits, errors, limits."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from PIL import Image

from lusd.web.editing import AppSettings
from tests.support.web import served, shapes_picture

TARGET = "a red circle and a blue square"


class Exploding:
    """The real pipeline, except that a target with "explode" fails like a bug would,
    and one with "slowly" takes 0.3 s a step (1 s "very slowly"), to watch the progress."""

    def __init__(self, pipe):
        self.pipe = pipe

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, image, source, target, **kwargs):
        if "explode" in target:
            raise RuntimeError("boom: /internal/secret/path line 42")
        if "slowly" in target:
            report, pause = kwargs["callback"], 1.0 if "very slowly" in target else 0.3
            kwargs["callback"] = lambda step, total: (time.sleep(pause), report(step, total))
        return self.pipe(image, source, target, **kwargs)


@pytest.fixture(scope="module")
def server(tiny_pipe):
    settings = AppSettings(
        max_pixels=200 * 200, max_file_size="1mb", base_overrides={"num_steps": 6}
    )
    with served(Exploding(tiny_pipe), settings) as (url, demo, workdir):
        yield url, workdir


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    return shapes_picture(tmp_path_factory.mktemp("pictures") / "circle.png", size=48)


def _edit(client, picture, target=TARGET, focus="", strength=3, seed=5, show_mask=False):
    return client.predict(
        handle_file(str(picture)),
        "a red circle",
        target,
        focus,
        strength,
        seed,
        show_mask,
        api_name="/edit",
    )


def test_edit_returns_before_after_download_and_gallery(client, picture):
    (before, after), download, status, gallery, seed = _edit(client, picture, seed=11)
    assert seed == 11 and "Done" in status and "square" in status
    with Image.open(before) as b, Image.open(after) as a, Image.open(download) as d:
        assert b.size == a.size == d.size == (48, 48)
        settings = json.loads(d.text["lusd"])
    assert settings["seed"] == 11 and settings["target_prompt"] == TARGET
    assert settings["focus"] == ["square"] and settings["config"]["num_steps"] == 6
    assert len(gallery) == 1 and TARGET in gallery[0]["caption"]


def test_strength_and_mask_view(client, picture):
    (_, plain), download, status, _, _ = _edit(client, picture, strength=1)
    assert "(3 steps)" in status  # strength 1: half of the 6 base steps
    (_, masked), _, _, _, _ = _edit(client, picture, strength=1, show_mask=True)
    with Image.open(plain) as a, Image.open(masked) as b:
        assert a.tobytes() != b.tobytes()  # the mask view tints the edited area


def test_an_empty_seed_box_means_seed_0(client, picture):
    assert _edit(client, picture, seed=None)[-1] == 0


def test_try_again_uses_a_new_seed(client, picture):
    first = _edit(client, picture, seed=3)[-1]
    again = client.predict(
        handle_file(str(picture)), "a red circle", TARGET, "", 3, False, api_name="/try_again"
    )
    assert again[-1] != first


def test_progress_reports_steps_and_time_left(client, picture):
    job = client.submit(
        handle_file(str(picture)), "", "a blue square slowly", "", 3, 0, False, api_name="/edit"
    )
    seen = set()
    deadline = time.monotonic() + 120
    while not job.done() and time.monotonic() < deadline:
        for unit in job.status().progress_data or []:
            seen.add((unit.index, unit.length, unit.unit, unit.desc))
        time.sleep(0.05)
    assert job.result(timeout=60)[2].startswith("Done")
    steps = [s for s in seen if s[2] == "steps" and s[1] == 6]
    assert steps, seen
    descriptions = [desc or "" for *_, desc in steps]
    assert any(d.startswith("Editing, about") and d.endswith("s left") for d in descriptions)


def test_stop_ends_the_running_edit_and_changes_nothing(server, picture):
    own = Client(server[0], verbose=False)  # a session of its own: Stop acts per session
    assert own.predict(api_name="/stop") == "Nothing is running."
    job = own.submit(
        handle_file(str(picture)),
        "",
        "a blue square very slowly",
        "",
        3,
        0,
        False,
        api_name="/edit",
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(unit.unit == "steps" for unit in job.status().progress_data or []):
            break
        time.sleep(0.05)
    results = sorted((server[1] / "results").rglob("*"))
    assert own.predict(api_name="/stop") == "Stopping…"
    _, _, status, _, _ = job.result(timeout=60)
    done = re.fullmatch(r"Stopped after (\d) of 6 steps; the picture was not changed\.", status)
    assert done and 1 <= int(done[1]) < 6, status
    assert sorted((server[1] / "results").rglob("*")) == results, "nothing was saved"
    # the session edits normally afterwards
    assert _edit(own, picture)[2].startswith("Done")


def test_focus_words_endpoint(client):
    assert client.predict("a cat", "a cat wearing a party hat", api_name="/focus_words") == (
        "party, hat"
    )


@pytest.mark.parametrize(
    ("target", "focus", "expected"),
    [
        ("", "", "Describe what the picture should become"),
        (TARGET, "giraffe", "Focus word 'giraffe' does not occur"),
        ("a blue square explode", "", "failed unexpectedly"),
    ],
)
def test_errors_are_plain_words_and_the_app_keeps_serving(client, picture, target, focus, expected):
    with pytest.raises(AppError) as caught:
        _edit(client, picture, target=target, focus=focus)
    message = str(caught.value)
    assert expected in message
    assert "Traceback" not in message and "/internal/secret" not in message
    assert "Done" in _edit(client, picture)[2]


def test_unreadable_and_oversized_pictures_are_refused(client, tmp_path, picture):
    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"this is not a picture at all")
    with pytest.raises(AppError, match="not a picture the app can read"):
        _edit(client, fake)
    big = tmp_path / "big.png"
    Image.new("RGB", (250, 200), (240, 240, 240)).save(big)
    with pytest.raises(AppError, match="over the limit") as caught:
        _edit(client, big)
    assert str(tmp_path) not in str(caught.value)
    assert "Done" in _edit(client, picture)[2]


def test_a_decompression_bomb_is_refused_from_its_header(client, tmp_path, picture, monkeypatch):
    from PIL import PngImagePlugin

    bomb = tmp_path / "bomb.png"
    Image.new("1", (9_000, 9_000)).save(bomb)  # 81 megapixels in ~10 KB
    assert bomb.stat().st_size < 1024**2  # under the upload limit: only the pixel limit stops it
    with monkeypatch.context() as patch:  # the served app runs in this process
        patch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("decoded"))
        with pytest.raises(AppError, match="over the limit"):
            _edit(client, bomb)
    assert "Done" in _edit(client, picture)[2]


def test_upload_size_limit(server):
    url, _ = server
    data = os.urandom(1_200_000)
    response = httpx.post(
        f"{url}/gradio_api/upload", files={"files": ("big.png", data, "image/png")}, timeout=30
    )
    assert response.status_code == 413
    assert "exceeded maximum allowed size of 1048576 bytes" in response.text
    small = httpx.post(
        f"{url}/gradio_api/upload", files={"files": ("ok.png", b"x" * 100, "image/png")}
    )
    assert small.status_code == 200


def _traversal_paths(workdir) -> list[str]:
    return [
        "/etc/passwd",
        "../../../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{workdir}/../../etc/passwd",
        f"{workdir}/..%2F..%2Fetc%2Fpasswd",
        "/proc/self/environ",
        "src/lusd/web/app.py",
        "pyproject.toml",
        f"{os.path.dirname(workdir)}",
        "http://127.0.0.1:1/",
        "file:///etc/passwd",
    ]


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side ../ normalisation)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_file_api_refuses_paths_outside_the_temp_folder(server, client, picture):
    url, workdir = server
    _edit(client, picture)
    results = sorted(workdir.glob("results/*/lusd-edit-*.png"))
    assert results, "the app writes its results inside its own temp folder"
    status, body = _raw_get(url, f"/gradio_api/file={results[0]}")
    assert status == 200 and body.startswith(b"\x89PNG")
    for path in _traversal_paths(workdir):
        for prefix in ("/gradio_api/file=", "/file="):
            status, body = _raw_get(url, prefix + path)
            assert status in (400, 403, 404), (prefix, path, status)
            assert b"root:" not in body and b"PATH=" not in body
        status, _ = _raw_get(url, "/gradio_api/file=" + path)
        assert status in (400, 403), path  # refused by the file API, not merely unrouted


def test_a_box_region_through_the_api(client, picture):
    args = (handle_file(str(picture)), "a red circle", TARGET, "", 3, 5, False)
    (_, after), download, status, _, _ = client.predict(*args, box="24,0,48,24", api_name="/edit")
    with Image.open(download) as result, Image.open(picture) as before:
        settings = json.loads(result.text["lusd"])
        changed = np.any(np.asarray(result.convert("RGB")) != np.asarray(before.convert("RGB")), 2)
    assert settings["region"] == "box:24,0,48,24" and settings["region_box"] == [24, 0, 48, 24]
    assert not changed[24:].any() and not changed[:, :24].any()
    with pytest.raises(AppError, match="outside the 48x48 picture"):
        client.predict(*args, box="40,0,60,10", api_name="/edit")
