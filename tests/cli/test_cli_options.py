"""The CLI's shape: product commands at the top, development ones under `lusd lab`, and an
option spelled, typed, defaulted and explained the same way in every command."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import typer.main
from typer.core import TyperOption
from typer.testing import CliRunner

from lusd.cli import app

runner = CliRunner()

PRODUCT = {"edit", "batch", "serve", "info", "inspect", "demo", "eval", "report", "generate"}
#: Same name, different option, on purpose (see lusd.commands.options).
DIFFERENT = {
    ("serve", "--max-pixels"): "default",  # uploads from other people: a lower limit
    ("generate", "--model"): "all",  # diffusers SD folders only
    ("generate", "--steps"): "all",  # DDIM sampling steps, 50
    ("lab train-shapes", "--seed"): "default",  # left out: the recipe's
    # not one option: a file in some commands, a folder in others
    ("*", "--output"): "all",
    ("*", "--out"): "all",
}


def commands() -> Iterator[tuple[str, object]]:
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), command

    yield from walk(typer.main.get_command(app), [])


def test_product_commands_at_the_top_development_under_lab():
    top = typer.main.get_command(app).commands
    shown = {name for name, command in top.items() if not command.hidden}
    assert shown == PRODUCT | {"lab"}
    assert set(top["lab"].commands) == {"train-shapes", "bench-shapes"}
    assert "checkout" in top["lab"].help
    assert {name for name, command in top.items() if command.hidden} == {"train-shapes", "bench"}


def test_an_option_is_the_same_in_every_command():
    seen: dict[str, tuple[str, tuple]] = {}
    defaults: dict[str, tuple[str, object]] = {}
    compared = set()
    for where, command in commands():
        if where.startswith(("train-shapes", "bench ")):  # the old spellings: the same commands
            continue
        for param in command.params:
            if not isinstance(param, TyperOption):
                continue
            name = max(param.opts, key=len)
            skip = DIFFERENT.get((where, name)) or DIFFERENT.get(("*", name))
            if skip == "all":
                continue
            shape = (
                tuple(sorted(param.opts + param.secondary_opts)),
                param.type_descriptor.annotation,
                (param.min, param.max),
                param.multiple,
                param.is_flag,
                param.help,
            )
            other, first = seen.setdefault(name, (where, shape))
            assert shape == first, f"{name}: {where} and {other} differ"
            if skip != "default":
                other, first = defaults.setdefault(name, (where, param.default))
                assert param.default == first, f"{name}: {where} and {other} default differ"
            if other != where:
                compared.add(name)
    shared = {"--model", "--model-config", "--device", "--dtype", "--allow-pickle", "--seed"}
    shared |= {"--require-commercial", "--c2pa-cert", "--c2pa-key", "--steps", "--set"}
    shared |= {"--max-pixels"}
    assert shared <= compared  # each of them is in two commands at least
    assert defaults["--device"][1] == "auto" and seen["--model-config"][1][1] is str


def test_the_old_spellings_still_work_and_name_the_new_ones(tmp_path, monkeypatch):
    import shapes_lab.train as train

    seen: list[list[str]] = []
    monkeypatch.setattr(train, "main", lambda argv: seen.append(argv) or 0)
    result = runner.invoke(app, ["train-shapes", "--work", str(tmp_path), "--unet-lr", "3e-4"])
    assert result.exit_code == 0, result.output
    assert "`lusd train-shapes` is now `lusd lab train-shapes`" in result.stderr
    assert seen == [["--work", str(tmp_path), "--out", "shapes-model", "--unet-lr", "0.0003"]]
    result = runner.invoke(app, ["bench", "shapes", "--cases", "0"])
    assert result.exit_code == 2 and "--cases" in result.stderr


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["train-shapes"], "lab train-shapes"),
        (["bench-shapes", "--cases", "1"], "lab bench-shapes"),
    ],
)
def test_lab_outside_a_checkout_is_one_line(tmp_path, monkeypatch, args, command):
    import lusd.commands.lab as lab

    monkeypatch.setattr(lab, "CHECKOUT", tmp_path)  # no shapes_lab/ there
    for name in [m for m in sys.modules if m.split(".")[0] == "shapes_lab"]:
        monkeypatch.setitem(sys.modules, name, None)  # and none importable
    monkeypatch.setitem(sys.modules, "shapes_lab", None)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["lab", *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert f"`lusd {command}` needs a checkout of the lusd repository" in lines[0]
    assert list(tmp_path.iterdir()) == []
