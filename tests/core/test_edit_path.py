"""The one edit path: the same pixels and settings from every front end, per-call state
under concurrent use, and a bounded cost whatever the prompts."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lusd.cli import app
from lusd.config import preset_config
from lusd.edit_path import EditRequest, read_settings, run_edit
from lusd.errors import ConfigError, PromptError
from tests.support.web import free_port, start_serve, stop_serve, wait_for_page

SOURCE, TARGET = "a cat", "a cat wearing a party hat"
BIG_SEED = 2**40 + 3  # beyond any 32-bit seed


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def request(pipe, photo_file, preset="lusd", seed=0, target=TARGET, **overrides):
    config = preset_config(preset, pipe.default_config, num_steps=5, **overrides)
    image = Image.open(photo_file).convert("RGB")
    return EditRequest(image, SOURCE, target, config, preset=preset, seed=seed)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_cli_batch_web_and_api_give_the_same_pixels_and_settings(
    tiny_pipe, tiny_model_dir, photo_file, tmp_path
):
    from lusd.batch.journal import Journal
    from lusd.web.editing import AppSettings, Editor

    runner = CliRunner()
    cli_out = tmp_path / "cli.png"
    args = ["edit", str(photo_file), "-s", SOURCE, "-t", TARGET, "--model", str(tiny_model_dir)]
    result = runner.invoke(
        app, [*args, "--steps", "5", "--seed", str(BIG_SEED), "-o", str(cli_out)]
    )
    assert result.exit_code == 0, result.output

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        f"image,source_prompt,target_prompt,seed,num_steps\n{photo_file},{SOURCE},{TARGET},"
        f"{BIG_SEED},5\n"
    )
    batch_dir = tmp_path / "batch"
    result = runner.invoke(
        app,
        ["batch", str(manifest), "-o", str(batch_dir), "--model", str(tiny_model_dir)]
        + ["--no-progress", "--allow-dir", str(photo_file.parent)],
    )
    assert result.exit_code == 0, result.output
    with Journal(batch_dir / "journal.sqlite") as journal:
        batch_out = batch_dir / journal.jobs()[0]["output"]

    web = Editor(tiny_pipe, AppSettings(base_overrides={"num_steps": 5}), tmp_path / "web")
    web_out = web.run(str(photo_file), SOURCE, TARGET, "", 3, BIG_SEED).result_path

    api = run_edit(tiny_pipe, request(tiny_pipe, photo_file, seed=BIG_SEED))
    expected = np.asarray(api.image)
    for path in (cli_out, batch_out, web_out):
        assert np.array_equal(pixels(path), expected), path
        with Image.open(path) as image:
            settings = read_settings(image.text)
        assert settings == api.settings, path
        assert settings["seed"] == BIG_SEED and settings["model"] == str(tiny_model_dir)
        assert len(settings["weights_hash"]) == 12


def test_settings_of_earlier_batch_outputs_still_read():
    legacy = {"lusd:source_prompt": "a", "lusd:target_prompt": "b", "lusd:seed": "4"}
    assert read_settings(legacy) == {"source_prompt": "a", "target_prompt": "b", "seed": 4}
    assert read_settings({"lusd": json.dumps({"seed": 1})}) == {"seed": 1}
    assert read_settings({"Software": "x"}) is None and read_settings({"lusd": "{"}) is None


def test_request_checks_its_seed_and_target(tiny_pipe, photo_file):
    with pytest.raises(ConfigError, match="between 0 and 2\\*\\*63 - 1"):
        request(tiny_pipe, photo_file, seed=2**63)
    with pytest.raises(PromptError, match="target prompt is empty"):
        request(tiny_pipe, photo_file, target="  ")


def test_two_threads_on_one_pipeline_give_what_they_give_alone(tiny_pipe, photo_file):
    # different presets, prompts and mask levels, so that any shared state would show
    first = request(tiny_pipe, photo_file, seed=1)
    second = request(
        tiny_pipe, photo_file, preset="lusd-no-filter", seed=2, target="a dog", mask_cross_factor=2
    )
    alone = [np.asarray(run_edit(tiny_pipe, r).image) for r in (first, second)]
    start = threading.Barrier(2)

    def together(req):
        start.wait()
        return np.asarray(run_edit(tiny_pipe, req).image)

    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(together, (first, second)))
        assert all(np.array_equal(a, b) for a, b in zip(alone, both, strict=True))


def test_stop_request_belongs_to_its_call(tiny_pipe, photo_file):
    stopped = run_edit(tiny_pipe, request(tiny_pipe, photo_file), should_stop=lambda: True)
    assert stopped.stats["interrupted"] and stopped.stats["iterations"] == 0
    full = run_edit(tiny_pipe, request(tiny_pipe, photo_file))
    assert not full.stats["interrupted"] and full.stats["iterations"] == 5


def test_prompts_that_ask_for_no_change_fail_before_any_unet_pass(tiny_pipe, photo_file):
    calls = []
    original = tiny_pipe.unet.forward
    tiny_pipe.unet.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        for preset in ("lusd", "dds"):
            with pytest.raises(PromptError, match="ask for no change"):
                run_edit(tiny_pipe, request(tiny_pipe, photo_file, preset, target="A  cat"))
    finally:
        del tiny_pipe.unet.forward
    assert not calls
    # SDS reads the target prompt alone: the same words are a valid SDS edit
    assert run_edit(tiny_pipe, request(tiny_pipe, photo_file, "sds", target=SOURCE)).image


def test_cli_says_no_change_in_one_line(tiny_model_dir, photo_file, tmp_path):
    out = tmp_path / "same.png"
    args = ["edit", str(photo_file), "-s", "a red circle", "-t", "A red  circle"]
    result = CliRunner().invoke(app, [*args, "--model", str(tiny_model_dir), "-o", str(out)])
    assert result.exit_code == 1
    assert "ask for no change" in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_serve_concurrency_2_matches_one_at_a_time(tiny_model_dir, photo_file, tmp_path):
    from gradio_client import Client, handle_file

    port = free_port()
    args = ["--model", str(tiny_model_dir), "--port", str(port), "--steps", "60"]
    process = start_serve([*args, "--concurrency", "2"], tmp_path)
    try:
        assert wait_for_page(port, process) is not None, process.poll()
        clients = [Client(f"http://127.0.0.1:{port}/", verbose=False) for _ in range(2)]
        edits = [(TARGET, 3, 11), ("a dog in the snow", 4, 2**50)]

        def submit(client, edit):
            target, strength, seed = edit
            args = (handle_file(str(photo_file)), SOURCE, target, "", strength, seed, False)
            return client.submit(*args, api_name="/edit")

        alone = [pixels(submit(clients[0], e).result()[1]) for e in edits]
        for _ in range(2):
            jobs = [submit(c, e) for c, e in zip(clients, edits, strict=True)]
            together = [pixels(job.result()[1]) for job in jobs]
            assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    finally:
        output = stop_serve(process)
    assert "Traceback" not in output, output
