"""Helpers shared by CLI commands: one-line errors, quiet libraries, seeds, overrides."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from lusd.errors import ConfigError, LUSDError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def cli_errors(function: F) -> F:
    """Turn LUSDError into one stderr line + exit 1; anything else into one line + exit 2."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except LUSDError as error:
            raise fail(str(error)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; nothing was written for the unfinished work", 130) from None
        except MemoryError:
            raise fail(
                "out of memory: use a smaller image (--max-pixels) or a smaller model", 2
            ) from None
        except Exception as error:
            if os.environ.get("LUSD_DEBUG"):
                raise
            if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                where = f" writing {error.filename}" if error.filename else ""
                raise fail(f"no space left on the disk{where}; free some space and retry") from None
            if isinstance(error, OSError) and error.filename is not None:
                raise fail(f"cannot use {error.filename}: {error.strerror}") from None
            raise fail(
                f"unexpected {type(error).__name__}: {error} (set LUSD_DEBUG=1 for the traceback)",
                2,
            ) from None

    return wrapper  # type: ignore[return-value]


def user_error(text: str) -> str:
    """A recorded ``"ImageInputError: ..."`` as the user reads it: lusd's class names dropped."""
    import lusd.errors

    name, sep, rest = text.partition(": ")
    known = isinstance(getattr(lusd.errors, name, None), type)
    return rest if sep and known else text


def quiet_libraries() -> None:
    """Silence diffusers/transformers chatter and their progress bars (we show our own).

    ``LUSD_DEBUG=1`` also shows lusd's debug log, e.g. the traceback of a failed batch row.
    """
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if os.environ.get("LUSD_DEBUG"):
        logging.getLogger("lusd").setLevel(logging.DEBUG)


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``["lambda_reg=0.1", ...]`` -> {"lambda_reg": "0.1"}; values are coerced by EditConfig."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        result[key.strip()] = value.strip()
    return result


def check_commercial(model: str | None) -> None:
    """``--require-commercial``: LicenseError unless the model's licence allows it."""
    from lusd.licensing import read_model_license, require_commercial
    from lusd.model_id import model_name

    require_commercial(read_model_license(model), model_name(model))
