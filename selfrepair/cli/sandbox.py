"""`selfrepair sandbox ...`: build the sandbox image, check the isolation, clean leftovers."""

from __future__ import annotations

import typer
from rich.console import Console

from selfrepair.errors import SelfRepairError

app = typer.Typer(
    help="The sandbox where candidates run: build its image, check it, clean up.",
    no_args_is_help=True,
)
console = Console(stderr=True)


@app.command()
def build(
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Force the offline recipe: debootstrap + docker import (needs root and a Debian mirror).",
    ),
    dockerfile: bool = typer.Option(
        False,
        "--dockerfile",
        help="Force the Dockerfile recipe (its base image debian:bookworm-slim must be present or pullable).",
    ),
    mirror: str = typer.Option(
        None, help="Debian mirror for the offline recipe (default: this machine's apt mirror)."
    ),
) -> None:
    """Build the sandbox image locally (never pulled); a no-op when it is up to date.

    Without a flag: the Dockerfile when its base image is already present, else offline.
    """
    from selfrepair.sandbox.build import build_image
    from selfrepair.sandbox.container import docker_client

    if offline and dockerfile:
        raise SelfRepairError("choose one of --offline and --dockerfile")
    recipe = "offline" if offline else "dockerfile" if dockerfile else "auto"
    client = docker_client()
    with console.status("building the sandbox image") as status:
        done = build_image(
            client,
            recipe,
            say=lambda line: status.update(line) or console.print(line),
            mirror=mirror,
        )
    typer.echo(done)


@app.command()
def check(
    kind: str = typer.Option("auto", help="Which sandbox to check: auto, docker or local."),
) -> None:
    """Print what the sandbox isolates and how, after running a small probe in it."""
    from selfrepair.sandbox.choose import fallback_reason, open_sandbox
    from selfrepair.sandbox.core import Limits

    if kind == "auto":
        reason = fallback_reason()
        typer.echo("sandbox: docker" if reason is None else f"sandbox: local (fell back: {reason})")
    sandbox = open_sandbox(kind, pool_size=1)
    try:
        probe = sandbox.execute(
            {"probe.py": "import os\nprint(os.getuid())\n"},
            ["python", "probe.py"],
            limits=Limits(wall_seconds=30),
        )
        if probe.exit_code != 0:
            raise SelfRepairError(
                f"the {sandbox.name} sandbox could not run a probe: {probe.stderr.strip()[-300:]}"
            )
        typer.echo(
            f"probe: ran in {probe.wall_seconds * 1000:.0f} ms as uid {probe.stdout.strip()}"
        )
        for line in sandbox.isolation():
            typer.echo(f"  {line}")
    finally:
        sandbox.close()


@app.command()
def clean(
    all_containers: bool = typer.Option(
        False, "--all", help="Also remove containers whose owner process still runs."
    ),
) -> None:
    """Remove sandbox containers left behind by runs that ended without cleaning up."""
    from selfrepair.sandbox.container import docker_client, remove_orphans

    removed = remove_orphans(docker_client(), everything=all_containers)
    typer.echo(f"removed {removed} sandbox container(s)")
