"""Edit cases, their oracle judgement and the benchmark driver (with a fake pipeline)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lusd.shapes.edits import background_change, edit_success, make_cases
from lusd.shapes.oracle import parse_caption
from lusd.shapes.world import Obj, Scene, render
from shapes_lab.edit_bench import markdown_table, run, summarize, write_chart
from shapes_lab.results_doc import END, START, write_results_doc


def _after(case) -> Image.Image:
    return render(Scene(case.scene.background, case.expected))


def test_cases_are_seeded_balanced_and_parseable():
    a, b = make_cases(12, 3), make_cases(12, 3)
    assert [c.target_prompt for c in a] == [c.target_prompt for c in b]
    assert [c.kind for c in a[:3]] == ["add", "color", "shape"]
    assert {len(c.scene.objects) for c in a} == {1, 2}
    assert make_cases(12, 4)[0].target_prompt != a[0].target_prompt or a[1] != make_cases(12, 4)[1]
    for c in a:
        src, _ = parse_caption(c.source_prompt)
        tgt, _ = parse_caption(c.target_prompt)
        assert len(tgt) == len(src) + (c.kind == "add")


def test_success_only_for_the_asked_edit():
    for case in make_cases(30, 11):
        assert edit_success(case, _after(case)), case.target_prompt
        assert not edit_success(case, case.image()), case.target_prompt


def test_add_may_land_in_any_free_cell_but_nothing_else_may_change():
    case = next(c for c in make_cases(9, 5) if c.kind == "add")
    new = case.expected[-1]
    free = next(x for x in range(9) if x not in {o.cell for o in case.expected})
    moved = (*case.expected[:-1], Obj(new.color, new.shape, "large", free))
    assert edit_success(case, render(Scene(case.scene.background, moved)))
    wrong = (*case.expected[:-1], Obj(new.color, new.shape, "large", free), new)
    assert not edit_success(case, render(Scene(case.scene.background, wrong)))


def test_background_change():
    s = Scene("white", (Obj("red", "circle", "large", 4),))
    img = render(s)
    assert background_change(img, img) == 0.0
    arr = np.asarray(img).copy()
    arr[:5] = (200, 200, 200)  # far from the object: counted
    assert background_change(img, Image.fromarray(arr)) > 1.0
    moved = render(Scene("white", (Obj("blue", "circle", "large", 4),)))
    assert background_change(img, moved) == 0.0  # object pixels and their rim are excluded


class FakePipe:
    """Returns the correct edit for 'lusd', the input for anything else."""

    def __init__(self, cases):
        self.by_prompt = {c.target_prompt: c for c in cases}
        self.calls = 0

    def __call__(self, image, source, target, *, preset, generator, paste_back, **kw):
        self.calls += 1
        case = self.by_prompt[target]
        out = _after(case) if preset == "lusd" else image
        return SimpleNamespace(
            images=[out],
            masks=[Image.new("L", out.size, 255)],
            focus_words=["x"],
            stats={"unet_calls": 7, "filter_retries": 1, "config": {"use_mask": False}},
        )


def test_benchmark_driver_resumes_and_summarises(tmp_path):
    cases = make_cases(6, 1)
    pipe = FakePipe(cases)
    journal = tmp_path / "j.jsonl"
    records = run(pipe, cases, ["lusd", "dds"], journal)
    assert pipe.calls == 12 and len(journal.read_text().splitlines()) == 12
    again = FakePipe(cases)
    assert run(again, cases, ["lusd", "dds"], journal) == records and again.calls == 0
    assert [r["preset"] for r in records[:2]] == ["lusd", "dds"]
    summary = summarize(records)
    assert summary["lusd"]["all"]["success"] == 1.0 and summary["dds"]["all"]["success"] == 0.0
    assert summary["lusd"]["add"]["n"] == 2 and summary["dds"]["all"]["unet_calls"] == 7
    table = markdown_table(summary)
    assert "| lusd | 100.0% (6/6)" in table and "| dds | 0.0% (0/6)" in table
    write_chart(summary, tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").size[0] > 100
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nintro\n")
    payload = {"n_cases": 6, "seed": 1, "summary": summary, "configs": {}}
    write_results_doc(doc, payload)
    write_results_doc(doc, payload)  # replaced, not appended twice
    text = doc.read_text()
    assert text.count(START) == 1 and text.count(END) == 1 and "intro" in text
    json.dumps(records)


@pytest.mark.parametrize("kind", ["color", "shape"])
def test_change_keeps_cell_and_other_attribute(kind):
    case = next(c for c in make_cases(12, 2) if c.kind == kind)
    before = {(o.cell, o.color, o.shape) for o in case.scene.objects}
    after = {(o.cell, o.color, o.shape) for o in case.expected}
    assert len(before - after) == 1 and len(after - before) == 1
    (cell_b, col_b, sh_b), (cell_a, col_a, sh_a) = (before - after).pop(), (after - before).pop()
    assert cell_a == cell_b
    assert (col_a != col_b) == (kind == "color") and (sh_a != sh_b) == (kind == "shape")


def test_journal_records_of_retrained_weights_are_stale():
    import torch

    from lusd.config import preset_config
    from shapes_lab.edit_bench import _config_hash

    class Pipe(SimpleNamespace):
        def resolve_config(self, preset, config, overrides):
            return preset_config(preset, **overrides)

    torch.manual_seed(0)
    pipe = Pipe(unet=torch.nn.Linear(3, 3), text_encoder=torch.nn.Linear(3, 3))
    before = _config_hash(pipe, "lusd", None)
    assert before == _config_hash(pipe, "lusd", None) != _config_hash(pipe, "dds", None)
    with torch.no_grad():
        pipe.unet.weight[0, 0] += 1e-3
    assert _config_hash(pipe, "lusd", None) != before


def test_tuning_prefers_a_configuration_that_serves_every_edit_kind():
    from shapes_lab.tune import score

    def entry(success, bg, by_kind):
        return {"success": success, "bg_change": bg, "success_by_kind": by_kind}

    gives_up_adds = entry(0.4, 0.9, {"add": 0.0, "color": 0.5, "shape": 0.7})
    serves_all = entry(0.3, 1.0, {"add": 0.1, "color": 0.3, "shape": 0.5})
    assert max([gives_up_adds, serves_all], key=score) is serves_all
    # among configurations that serve every kind: success first, background change breaks ties
    better = entry(0.35, 1.5, {"add": 0.1, "color": 0.4, "shape": 0.55})
    assert max([serves_all, better], key=score) is better
    cleaner = entry(0.35, 0.8, {"add": 0.1, "color": 0.4, "shape": 0.55})
    assert max([better, cleaner], key=score) is cleaner
