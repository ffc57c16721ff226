"""The shipped model's own commands: `lusd generate` and `lusd demo`.

They need only the installed package (``lusd.shapes`` and its model); the commands that
train and benchmark the shapes model are under `lusd lab` (``lusd.commands.lab``).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from lusd.commands import options as opt
from lusd.commands.common import cli_errors, console, quiet_libraries


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("demo")(demo)


@cli_errors
def generate(
    prompt: str = typer.Argument(..., help='e.g. "a red circle on the left on a black background"'),
    output: Path = typer.Option(Path("generated.png"), "--output", "-o", help="Output PNG."),
    model: opt.GenerateModel = None,
    steps: opt.GenerateSteps = 50,
    guidance: float = typer.Option(
        7.5, "--guidance", min=0.0, help="Classifier-free guidance scale."
    ),
    seed: opt.Seed = 0,
) -> None:
    """Plain text-to-image (DDIM, classifier-free guidance): the shapes model or an SD folder.

    Pictures to try edits on. It needs only the installed package and its shipped model,
    so it sits beside edit and demo, not under `lusd lab`.
    """
    from lusd.errors import PromptError
    from lusd.images import output_format

    output_format(output)
    if not prompt.strip():
        raise PromptError("the prompt is empty: say what the picture should show")
    quiet_libraries()
    from lusd.disclosure import GENERATED_SOURCE_TYPE, tool_xmp
    from lusd.images import save_image
    from lusd.pipeline import check_prompt_length
    from lusd.shapes.generate import generate as run_generate
    from lusd.shapes.generate import load_t2i

    pipe = load_t2i(model)
    check_prompt_length(pipe.tokenizer, prompt)
    image = run_generate(pipe, prompt, seed, steps, guidance)[0]
    meta = {"prompt": prompt, "seed": str(seed), "steps": str(steps), "guidance": str(guidance)}
    xmp = tool_xmp([prompt], GENERATED_SOURCE_TYPE)
    save_image(image, output, metadata=meta, xmp=xmp)
    console.print(f"wrote {output} (AI-generated, disclosed in XMP)")
    try:
        from lusd.shapes.oracle import describe

        console.print(f"oracle sees: {describe(image)}")
    except Exception:  # noqa: BLE001 - other models' images need not be shapes-world scenes
        pass


@cli_errors
def demo(
    output: Path = typer.Option(Path("lusd-demo.png"), "--output", "-o", help="Sheet PNG."),
    seed: opt.Seed = 0,
    steps: opt.Steps = None,
) -> None:
    """Render a scene, run four LUSD edits with the shipped model, write input|output|mask.

    An add (four candidates ranked by the model's judge, then with a region), a colour
    change and a shape change.
    """
    started = time.perf_counter()
    quiet_libraries()
    from lusd.loading import load_pipeline
    from lusd.shapes.demo import run_demo, write_sheet

    with console.status("loading the shapes model..."):
        pipe = load_pipeline(None, "cpu")
    pipe.set_progress_bar_config(disable=True)
    with console.status("editing..."):
        results = run_demo(pipe, seed, steps)
    write_sheet(results, output)
    for r in results:
        verdict = "[green]success[/]" if r.success else "[red]not as asked[/]"
        where = f" [bold]in {r.region}[/]" if r.region else ""
        console.print(
            f"[bold]{r.case.kind}[/]{where}: {r.case.source_prompt!r} -> {r.case.target_prompt!r}"
        )
        console.print(f"  oracle before: {r.before}")
        console.print(
            f"  oracle after:  {r.after}  ({verdict}, focus {r.focus}, {r.seconds:.1f} s)"
        )
        if r.candidates:
            console.print(f"  {len(r.candidates)} candidates, the judge's pick first:")
            for c in r.candidates:
                mark = "[green]success[/]" if c.success else "[red]not as asked[/]"
                console.print(f"    seed {c.seed}: score {c.score:.3f} · oracle: {mark}")
    console.print(
        f"wrote {output} (input | output | mask) in {time.perf_counter() - started:.1f} s"
    )
