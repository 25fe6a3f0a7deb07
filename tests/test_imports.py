"""The rooms and the doors between them, read from every module's imports (those inside
functions too): the core knows no CLI, graphs or training; the sandbox knows no agents or
graphs; agents know no graphs, sandbox or training; inside agents/, models and code tools know
no agent and not each other, and outside it nothing but the graphs that run the agents imports
one (a model comes from agents.models, a parser from agents.code); nothing but the CLI imports
the CLI; graphs never print; and no two modules import each other, however indirectly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each subpackage's folder (pyproject.toml's [tool.setuptools.package-dir]).
FOLDERS = {
    "selfrepair": ROOT / "selfrepair",
    "selfrepair.agents": ROOT / "agents",
    "selfrepair.sandbox": ROOT / "sandbox",
    "selfrepair.graphs": ROOT / "graphs",
    "selfrepair.training": ROOT / "training",
    "selfrepair.factory": ROOT / "factory",
}
CORE = {
    f"selfrepair.{name}"
    for name in (
        "types",
        "loaders",
        "metrics",
        "stats",
        "comparison",
        "codesplit",
        "store",
        "rundir",
        "files",
        "report",
        "config",
        "errors",
        "paths",
        "settings",
        "strategy",
    )
}
CORE.add("selfrepair")
# The agents and what only they use (their prompts, their feedback): agents/ less its rooms.
AGENT_MODULES = tuple(
    f"selfrepair.agents.{path.stem}"
    for path in sorted((ROOT / "agents").glob("*.py"))
    if path.stem != "__init__"
)
# GRPO trains the solver on exactly the prompt the solver sends, so it asks the solver for it;
# the reviewer's data and its held-out scores use exactly the verifier's prompt and score.
TRAINS_ON_AGENT_PROMPTS = {
    "selfrepair.training.grpo",
    "selfrepair.training.datasets",
    "selfrepair.training.reviewer",
}
# Where a module may not import from: (the modules it applies to, the forbidden areas).
RULES = [
    (
        "the core",
        lambda m: m in CORE,
        ("selfrepair.cli", "selfrepair.graphs", "selfrepair.training", "selfrepair.factory"),
    ),
    (
        "the sandbox",
        lambda m: in_area(m, "selfrepair.sandbox"),
        ("selfrepair.agents", "selfrepair.graphs"),
    ),
    (
        "agents",
        lambda m: in_area(m, "selfrepair.agents"),
        ("selfrepair.graphs", "selfrepair.sandbox", "selfrepair.training"),
    ),
    # the rooms inside agents/: models and code tools stand below the agents, side by side
    (
        "model backends and serving",
        lambda m: in_area(m, "selfrepair.agents.models"),
        ("selfrepair.agents.code", *AGENT_MODULES),
    ),
    (
        "code tools",
        lambda m: in_area(m, "selfrepair.agents.code"),
        ("selfrepair.agents.models", *AGENT_MODULES),
    ),
    # a model or a parser comes from its own room; only the graphs run the agents themselves
    (
        "all but agents/ and the graphs",
        lambda m: (
            not in_area(m, "selfrepair.agents")
            and not in_area(m, "selfrepair.graphs")
            and m not in TRAINS_ON_AGENT_PROMPTS
        ),
        AGENT_MODULES,
    ),
    ("everything but the CLI", lambda m: not in_area(m, "selfrepair.cli"), ("selfrepair.cli",)),
    ("graphs", lambda m: in_area(m, "selfrepair.graphs"), ("selfrepair.training",)),
    # the task factory stands on the core, the sandbox and the agents; only the CLI uses it
    (
        "the factory",
        lambda m: in_area(m, "selfrepair.factory"),
        ("selfrepair.graphs", "selfrepair.training"),
    ),
    (
        "all but the CLI and the factory",
        lambda m: not in_area(m, "selfrepair.cli") and not in_area(m, "selfrepair.factory"),
        ("selfrepair.factory",),
    ),
    # an executor runs any command's jobs: it knows tasks, sandboxes and models, not what the jobs do
    (
        "the executor",
        lambda m: in_area(m, "selfrepair.executor"),
        ("selfrepair.graphs", "selfrepair.training"),
    ),
]
OUTPUT_MODULES = ("typer", "rich", "click")  # how a module would draw on the terminal


def in_area(module: str, area: str) -> bool:
    return module == area or module.startswith(area + ".")


def source_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    modules = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = source_files()


def imported(module: str, tree: ast.AST) -> set[str]:
    """Every name the module imports, anywhere in it, resolved to a module of the package
    where it is one (`from selfrepair.agents import editor` is selfrepair.agents.editor)."""
    names = set()
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return names


def parsed(module: str) -> ast.AST:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))


IMPORTS = {module: imported(module, parsed(module)) for module in MODULES}


def test_every_area_is_found() -> None:
    for area in (
        "selfrepair.cli.common",
        "selfrepair.store",
        "selfrepair.rundir",
        "selfrepair.agents.editor",
        "selfrepair.agents.models.backends",
        "selfrepair.agents.models.protocol",
        "selfrepair.agents.code.localise",
        "selfrepair.graphs.studio",
        "selfrepair.sandbox.core",
        "selfrepair.training.improve",
        "selfrepair.factory.pipeline",
        "selfrepair.executor.cluster",
    ):
        assert area in MODULES


@pytest.mark.parametrize("name, applies, forbidden", RULES, ids=[rule[0] for rule in RULES])
def test_no_module_imports_across_a_wall(name, applies, forbidden) -> None:
    crossing = sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        if applies(module)
        for target in targets
        if any(in_area(target, area) for area in forbidden)
    )
    assert not crossing, f"{name} may not import {', '.join(forbidden)}: " + "; ".join(crossing)


def test_commands_share_through_common_only() -> None:
    """A command module takes what it shares with another from cli/common.py, never from a
    sibling: a sibling's options move with its command's needs. The command table
    (cli/commands.py) is the one module that gathers the commands."""
    siblings = [
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        if in_area(module, "selfrepair.cli")
        and module not in ("selfrepair.cli", "selfrepair.cli.commands")
        for target in targets
        if in_area(target, "selfrepair.cli")
        and target not in ("selfrepair.cli", "selfrepair.cli.common", module)
    ]
    assert not siblings, "; ".join(siblings)


def test_graphs_never_print() -> None:
    """A graph runs under the CLI's progress display, in LangGraph Studio's server and in
    tests: what it has to say goes into the trajectory, and the caller shows it."""
    printing = []
    for module in (m for m in MODULES if in_area(m, "selfrepair.graphs")):
        printing += [
            f"{module} imports {t}" for t in IMPORTS[module] if t.split(".")[0] in OUTPUT_MODULES
        ]
        for node in ast.walk(parsed(module)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                printing.append(f"{module}:{node.lineno} calls print")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("stdout", "stderr")
                and getattr(node.value, "id", "") == "sys"
            ):
                printing.append(f"{module}:{node.lineno} writes to sys.{node.attr}")
    assert not printing, "; ".join(printing)


def test_no_import_cycles() -> None:
    graph = {
        module: sorted(t for t in targets if t in MODULES and t != module)
        for module, targets in IMPORTS.items()
    }
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in graph[module]:
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
