"""The `lusd` command line: a typer app whose commands live in lusd.commands.*."""

from __future__ import annotations

import importlib
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a busy CPU, spinning threads made a
# shapes-model demo 6x slower (126 s vs 19 s measured on a loaded 2-core machine).
# Set before torch is imported (commands import it lazily); a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from lusd import __version__

#: Modules under lusd.commands that add their commands to the app.
COMMAND_MODULES: tuple[str, ...] = ("edit", "batch", "serve", "info", "inspect", "shapes", "lab")


class OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, a missing argument) as one ``error:`` line on stderr,
    like every other error of the CLI, instead of a usage block and a boxed panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as error:  # typer's usage errors (vendored click)
            if type(error).__name__ != "NoArgsIsHelpError":  # its help is already printed
                command = error.ctx.command_path if getattr(error, "ctx", None) else "lusd"
                message = " ".join(error.format_message().split())
                typer.echo(f"error: {message} (see {command} --help)", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="lusd",
    help="Localized text-guided image editing (LUSD, ICCV 2025) on Stable Diffusion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lusd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Localized text-guided image editing (LUSD) on Stable Diffusion."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"lusd.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
