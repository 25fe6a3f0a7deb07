"""`selfrepair models pull|list`: the embedded models and the model spec forms."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from selfrepair.agents.models import smollm2
from selfrepair.agents.models.backends import SPEC_FORMS
from selfrepair.errors import SelfRepairError

app = typer.Typer(help="Get and list the embedded models.", no_args_is_help=True)

# name -> (description, where it is once pulled, whether it is pulled, pull function)
EMBEDDED = {
    smollm2.NAME: (
        smollm2.DESCRIPTION,
        smollm2.smollm2_dir,
        smollm2.is_pulled,
        smollm2.pull_smollm2,
    ),
}


@app.command()
def pull(
    name: str = typer.Argument(..., help=f"The model to fetch: {', '.join(EMBEDDED)}."),
) -> None:
    """Fetch an embedded model into the user cache (once) and print its folder."""
    if name not in EMBEDDED:
        raise SelfRepairError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    _, folder, is_pulled, pull_model = EMBEDDED[name]
    if is_pulled():
        Console(stderr=True).print(f"{name} is already pulled")
        typer.echo(folder())
        return
    typer.echo(pull_model())


@app.command("list")
def list_models() -> None:
    """Show the embedded models (pulled or not, and where) and the model spec forms."""
    console = Console()
    models = Table(title="Embedded models", title_justify="left")
    for column in ("spec", "model", "pulled"):
        models.add_column(column)
    models.add_column("folder", overflow="fold")
    for name, (description, folder, is_pulled, _) in EMBEDDED.items():
        pulled = is_pulled()
        models.add_row(
            name,
            description,
            "yes" if pulled else f"no (selfrepair models pull {name})",
            str(folder()),
        )
    console.print(models, soft_wrap=True)
    specs = Table(title="Model specs (--model)", title_justify="left")
    specs.add_column("spec")
    specs.add_column("backend")
    for form, meaning in SPEC_FORMS:
        specs.add_row(form, meaning)
    console.print(specs, soft_wrap=True)
