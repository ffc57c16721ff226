"""`lusd inspect`: read back an image's AI-edit disclosure and C2PA Content Credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from lusd.commands import options as opt
from lusd.commands.common import cli_errors, console, fail

_DST_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)


@cli_errors
def inspect(
    file: Path = typer.Argument(..., help="An image (PNG, JPEG, WebP, ...)."),
    trust: Path = typer.Option(
        None, "--c2pa-trust", help="PEM CA certificate(s) you trust for C2PA signatures."
    ),
    as_json: opt.Json = False,
) -> None:
    """Say whether FILE discloses an AI edit (XMP, C2PA) and with which settings.

    Exits 1 when the file cannot be read or its C2PA manifest does not validate.
    """
    from lusd.credentials import read_credentials
    from lusd.disclosure import read_disclosure
    from lusd.errors import ImageInputError

    found = read_disclosure(file)
    if found.xmp_error:
        raise ImageInputError(f"{file}: its XMP cannot be read: {found.xmp_error}")
    credentials = read_credentials(file, trust)
    if as_json:
        typer.echo(json.dumps({**found.to_dict(), "c2pa": credentials.to_dict()}, indent=2))
    else:
        _print(file, found, credentials)
    if credentials.present and not credentials.valid:
        raise fail(f"{file}: its C2PA manifest does not validate", 1)


def _print(file: Path, found: Any, credentials: Any) -> None:
    out = console.print
    out(f"{file}: {found.format} {found.size[0]}x{found.size[1]}")
    source_type = found.digital_source_type
    if source_type is None:
        out("  AI-edit disclosure: none (the file carries no IPTC digital source type in XMP)")
    else:
        verdict = "yes" if found.discloses_ai else "no (not an AI source type)"
        out(f"  AI-edit disclosure: {verdict}, digital source type {_short(source_type)}")
    edit = found.edit
    if edit is not None:
        weights = edit.weights_hash or "unknown"
        out(f"  edited with lusd {edit.version}: model {edit.model} (weights {weights})")
        out(f"  method {edit.method}, preset {edit.preset}, seed {edit.seed}, {edit.steps} steps")
        out(f"  source prompt: {edit.source_prompt or '(none)'}")
        out(f"  target prompt: {edit.target_prompt}")
        out(f"  focus words: {', '.join(edit.focus) or '(none: global edit)'}")
    out(f"  C2PA Content Credentials: {_credentials_line(credentials)}")
    if credentials.present:
        actions = ", ".join(credentials.actions) or "none"
        kinds = ", ".join(_short(t) for t in credentials.digital_source_types) or "none"
        out(f"    actions: {actions}; digital source type: {kinds}")
        ingredients = ", ".join(credentials.ingredients) or "none"
        out(
            f"    signed by {credentials.signer or '?'} (issuer {credentials.issuer or '?'}); "
            f"ingredients: {ingredients}"
        )


def _credentials_line(credentials: Any) -> str:
    if credentials.state == "absent":
        return "none"
    if credentials.state == "unchecked":
        return f"not checked ({credentials.note})"
    if credentials.state == "Trusted":
        return "valid and trusted"
    if credentials.valid:
        return f"valid signature; {credentials.note}" if credentials.note else "valid"
    return f"INVALID ({', '.join(credentials.failures) or 'no reason given'})"


def _short(source_type: str) -> str:
    return source_type.removeprefix(_DST_PREFIX)
