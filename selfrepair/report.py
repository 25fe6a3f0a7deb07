"""One self-contained HTML page that shows what a run did and how well.

The page needs no network to open: the CSS is inline, the plots are inline SVG drawn by
matplotlib, and there is no script at all (the collapsible parts are <details>).
Everything that came from a model, a task or a test run is escaped.

A run directory (selfrepair.rundir) holds `run.sqlite` (the trajectories), `results.jsonl`
(one `metrics.result_row` per task) and `summary.json` (the summary and the run's config).
The numbers on the page are recomputed from `results.jsonl`, so they are the numbers the
rows hold, whatever `summary.json` says.

An `improve` folder (it holds `comparison.json`, selfrepair.comparison) is drawn as its
rounds: each eval set's pass@1 and repair rate for the base and every round with their 95%
intervals, the paired differences with their p-values, and the seconds of each phase.

A `tune` folder (it holds `study.sqlite` and `report.json`, training.tune) is drawn as its
search: each trial's utility on the dev tasks and the best so far, the improver's proposals
(refused ones by kind), and the tuned strategy against the default on the eval tasks.
"""

from __future__ import annotations

import difflib
import html
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfrepair.comparison import COMPARISON, describe_difference, read_comparison
from selfrepair.errors import SelfRepairError
from selfrepair.files import check_output_file, write_atomically
from selfrepair.metrics import pass_at_k, pass_at_tokens, summarize
from selfrepair.rundir import FILES, RESULTS, SUMMARY, complete_lines
from selfrepair.store import TrajectoryStore, store_path
from selfrepair.types import Step, TestReport, Trajectory

REPORT_NAME = "report.html"
TUNE_REPORT, TUNE_STUDY = "report.json", "study.sqlite"  # what marks a `tune` folder

# The result-row fields the page reads; a row without one is from an older selfrepair.
ROW_FIELDS = (
    "task_id",
    "trajectory_id",
    "strategy",
    "model",
    "outcome",
    "solved",
    "first_passed",
    "candidates",
    "candidates_to_solve",
    "tokens",
    "tokens_to_solve",
    "sandbox_seconds",
    "wall_seconds",
    "reviewer_errors",
)
# The core of a run's config, where summary.json holds them beside the numbers.
CONFIG_KEYS = ("command", "strategy", "model", "data", "budget")


@dataclass
class Run:
    """One run directory, read and checked."""

    directory: Path
    label: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]  # recomputed from rows
    config: dict[str, Any]
    trajectories: dict[str, Trajectory]  # by trajectory_id


# ---------------------------------------------------------------- reading a run directory


def load_run(directory: Path) -> Run:
    directory = Path(directory)
    if not directory.is_dir():
        raise SelfRepairError(f"{directory} is not a directory (give a run directory)")
    missing = [name for name in FILES if not (directory / name).is_file()]
    if len(missing) == len(FILES):
        raise SelfRepairError(
            f"{directory} is not a run directory: it holds none of {', '.join(FILES)}"
        )
    if missing:
        raise SelfRepairError(
            f"run directory {directory} lacks {', '.join(missing)} "
            "(an unfinished run, or one from an older selfrepair?)"
        )
    rows = _read_rows(directory / RESULTS)
    config = _read_config(directory / SUMMARY)
    trajectories = _read_trajectories(directory, rows)
    return Run(
        directory=directory,
        label=directory.resolve().name,
        rows=rows,
        summary=summarize(rows),
        config=config,
        trajectories=trajectories,
    )


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(complete_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise SelfRepairError(f"{path}:{number}: not valid JSON: {error.msg}") from None
        if not isinstance(row, dict):
            raise SelfRepairError(f"{path}:{number}: a result row must be a JSON object")
        lacking = [field for field in ROW_FIELDS if field not in row]
        if lacking:
            raise SelfRepairError(
                f"{path}:{number}: result row lacks {', '.join(lacking)} "
                "(written by an older selfrepair? run it again to report on it)"
            )
        rows.append(row)
    if not rows:
        raise SelfRepairError(f"{path} holds no results (the run finished no task)")
    return rows


def _read_config(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SelfRepairError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    if not isinstance(summary, dict):
        raise SelfRepairError(f"{path} must hold a JSON object")
    # bench and fix record their config in its own "config" object; the core keys beside the
    # summary's numbers are read too, so a hand-made summary still names its run.
    if isinstance(summary.get("config"), dict):
        return summary["config"]
    return {key: summary[key] for key in CONFIG_KEYS if key in summary}


def _read_trajectories(directory: Path, rows: list[dict[str, Any]]) -> dict[str, Trajectory]:
    path = store_path(directory)
    trajectories = {}
    with TrajectoryStore(path, read_only=True) as store:
        for row in rows:
            trajectory = store.get(row["trajectory_id"])
            if trajectory is None:
                raise SelfRepairError(
                    f"{path} has no trajectory {row['trajectory_id']} for task {row['task_id']} "
                    f"that {RESULTS} names"
                )
            trajectories[trajectory.trajectory_id] = trajectory
    return trajectories


def _unique_labels(runs: list[Run]) -> None:
    """Two runs from directories of the same name are told apart by their full paths."""
    names = [run.label for run in runs]
    for run in runs:
        if names.count(run.label) > 1:
            run.label = str(run.directory.resolve())


# ---------------------------------------------------------------- plots


LINE_STYLES = ("-", "--", ":", "-.")


def _plot_svg(
    series: list[tuple[str, list[float], list[float]]], xlabel: str, title: str, id_prefix: str
) -> str:
    """A step plot of repair rate, one line per run, as an inline <svg> element."""
    # A bare Figure (no pyplot) draws with the non-interactive renderers alone: no GUI
    # backend is chosen, and the process's pyplot state is left as it was.
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # Text stays text (no glyph paths): smaller, selectable, searchable.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": id_prefix}):
        figure = Figure(figsize=(5.6, 3.5))
        axes = figure.add_subplot()
        for number, (label, xs, ys) in enumerate(series):
            # Runs often share a curve: a line style each keeps the lower ones visible.
            style = LINE_STYLES[number % len(LINE_STYLES)]
            # A "$" would start mathtext; run names are plain text.
            axes.step(
                xs,
                ys,
                where="post",
                linestyle=style,
                marker="o",
                markersize=3,
                alpha=0.85,
                linewidth=1.8,
                label=label.replace("$", r"\$"),
            )
        axes.set_xlabel(xlabel)
        axes.set_ylabel("repair rate")
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlim(left=0)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
        return _inline_svg(figure, id_prefix)


def _inline_svg(figure: Any, id_prefix: str) -> str:
    """The figure as an inline <svg> element (drawn inside the caller's rc_context)."""
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    # Inline SVG in HTML takes the <svg> element alone, without the XML prologue; its ids
    # get a per-plot prefix, since the page's plots share one id space.
    svg = svg[svg.index("<svg") :]
    prefix = id_prefix + "-"
    svg = re.sub(r'\bid="', f'id="{prefix}', svg)
    return svg.replace("url(#", f"url(#{prefix}").replace('href="#', f'href="#{prefix}')


def candidates_plot(runs: list[Run]) -> str:
    series = []
    for run in runs:
        most = max(row["candidates"] for row in run.rows)
        ks = list(range(0, most + 1))
        series.append((run.label, [float(k) for k in ks], [pass_at_k(run.rows, k) for k in ks]))
    return _plot_svg(
        series, "candidates tried (k)", "Repair rate against candidates tried (pass@k)", "pass-k"
    )


def tokens_plot(runs: list[Run]) -> str:
    longest = max(max(row["tokens"] for row in run.rows) for run in runs)
    series = []
    for run in runs:
        curve = pass_at_tokens(run.rows)
        xs = [0.0] + [float(tokens) for tokens, _ in curve]
        ys = [0.0] + [rate for _, rate in curve]
        # Carry each line on to the largest spend, so a flat tail reads as "no more solved".
        xs.append(float(longest))
        ys.append(ys[-1])
        series.append((run.label, xs, ys))
    return _plot_svg(
        series, "tokens spent on a task (t)", "Repair rate against tokens spent (pass@t)", "pass-t"
    )


def rounds_plot(eval_set: str, result: dict[str, Any], id_prefix: str) -> str:
    """pass@1 and repair rate of the base and each round, with their intervals, as inline SVG."""
    import matplotlib
    from matplotlib.figure import Figure

    names = [model["name"] for model in result["models"]]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": id_prefix}):
        figure = Figure(figsize=(5.6, 3.5))
        axes = figure.add_subplot()
        for offset, metric, label in (
            (-0.08, "pass@1", "pass@1"),
            (0.08, "repair_rate", f"repair rate (pass@{result['samples']})"),
        ):
            values = [model[metric] for model in result["models"]]
            centres = [v["value"] for v in values]
            errors = [
                [v["value"] - v["low"] for v in values],
                [v["high"] - v["value"] for v in values],
            ]
            axes.errorbar(
                [i + offset for i in range(len(names))],
                centres,
                yerr=errors,
                marker="o",
                capsize=4,
                linewidth=1.5,
                label=label,
            )
        axes.set_xticks(range(len(names)), [name.replace("$", r"\$") for name in names])
        axes.set_ylabel("share of eval tasks")
        axes.set_ylim(-0.02, 1.02)
        axes.set_title(f"{eval_set}: {result['tasks']} tasks, 95% intervals")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper left", fontsize="small")
        return _inline_svg(figure, id_prefix)


# ---------------------------------------------------------------- HTML pieces

_e = html.escape

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
table.summary td.model { max-width: 18em; overflow-wrap: anywhere; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots svg { max-width: 100%; height: auto; border: 1px solid #eee; }
details { margin: 0.4em 0; } summary { cursor: pointer; }
details.task > summary { font-weight: 600; }
details.task[open] { border: 1px solid #ddd; padding: 0 1em 0.5em; border-radius: 4px; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; font-size: 0.85em; }
.step { border-left: 3px solid #bbb; margin: 0.8em 0 0.8em 0.5em; padding-left: 0.8em; }
.step.pass { border-color: #2a8a2a; } .step.fail { border-color: #c33; }
.ok { color: #2a8a2a; font-weight: 600; } .bad { color: #c33; font-weight: 600; }
.muted { color: #777; }
.diff .add { background: #e6ffec; display: block; } .diff .del { background: #ffebe9; display: block; }
.diff .hunk { color: #6f42c1; display: block; }
ul.tree { list-style: none; padding-left: 1.2em; border-left: 1px dotted #aaa; }
ul.tree.root { border-left: none; padding-left: 0; }
"""


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary_table(runs: list[Run]) -> str:
    header = (
        "<tr><th class='text'>run</th><th class='text'>strategy</th><th class='text'>model</th>"
        "<th>tasks</th><th>solved</th><th>repair rate</th><th>pass@1</th><th>pass@k</th>"
        "<th>tokens</th><th>tokens per solved task</th><th>sandbox s</th><th>wall s</th>"
        "<th>reviewer errors</th><th>suspicious runs</th></tr>"
    )
    lines = []
    for run in runs:
        s = run.summary
        k = max(s["pass@k"], default=0)
        pass_k = f"{_rate(s['pass@k'][k])} (k={k})" if k else "n/a"
        strategies = sorted({row["strategy"] for row in run.rows})
        models = sorted({row["model"] for row in run.rows})
        lines.append(
            f"<tr class='run-summary'><td class='text'>{_e(run.label)}</td>"
            f"<td class='text'>{_e(', '.join(strategies))}</td><td class='text model'>{_e(', '.join(models))}</td>"
            f"<td>{s['tasks']}</td><td>{s['solved']}</td>"
            f"<td class='repair-rate'>{_rate(s['repair_rate'])}</td><td class='pass-1'>{_rate(s['pass@1'])}</td>"
            f"<td class='pass-k'>{pass_k}</td><td class='tokens'>{_number(s['tokens'])}</td>"
            f"<td class='tokens-per-solved'>{_number(s['tokens_per_solved'])}</td>"
            f"<td class='sandbox-seconds'>{_number(s['sandbox_seconds'], 2)}</td>"
            f"<td>{_number(s['wall_seconds'], 2)}</td><td>{s['reviewer_errors']}</td>"
            f"<td class='suspicious'>{s['suspicious']}</td></tr>"
        )
    return f"<table class='summary'>{header}{''.join(lines)}</table>"


def config_list(run: Run) -> str:
    if not run.config:
        return ""
    items = "".join(
        f"<li><b>{_e(key)}</b>: <code>{_e(json.dumps(value) if not isinstance(value, str) else value)}</code></li>"
        for key, value in run.config.items()
    )
    return f"<ul class='config'>{items}</ul>"


def diff_html(before: dict[str, str], after: dict[str, str], before_name: str) -> str:
    """A unified diff per changed file, coloured by line."""
    out = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, ""), after.get(path, "")
        if old == new:
            continue
        lines = difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            f"{path} ({before_name})",
            f"{path} (this candidate)",
            lineterm="",
        )
        out.extend(lines)
    if not out:
        return f"<p class='muted'>no change from {_e(before_name)}</p>"
    return _colour_diff(out)


def _colour_diff(lines: list[str]) -> str:
    spans = []
    for line in lines:
        if line.startswith(("+++", "---")):
            spans.append(f"<b>{_e(line)}</b>\n")
        elif line.startswith("@@"):
            spans.append(f"<span class='hunk'>{_e(line)}</span>")
        elif line.startswith("+"):
            spans.append(f"<span class='add'>{_e(line)}</span>")
        elif line.startswith("-"):
            spans.append(f"<span class='del'>{_e(line)}</span>")
        else:
            spans.append(f"{_e(line)}\n")
    return f"<pre class='diff'>{''.join(spans)}</pre>"


OUTCOME_CLASS = {"passed": "ok", "failed": "bad", "error": "bad", "skipped": "muted"}


def report_html(report: TestReport) -> str:
    verdict = (
        "<span class='ok'>passed</span>" if report.passed else "<span class='bad'>failed</span>"
    )
    facts = [f"tests {verdict}", f"exit {report.exit_code}", f"{report.wall_seconds:.2f}s wall"]
    if report.sandbox:
        facts.append(f"{_e(report.sandbox)} sandbox")
    if report.timed_out:
        facts.append("<span class='bad'>timed out</span>")
    if report.out_of_memory:
        facts.append("<span class='bad'>out of memory</span>")
    if report.verdict:
        facts.append(f"verdict by the {_e(report.verdict)}")
    parts = [f"<p>{' · '.join(facts)}</p>"]
    if report.suspicious:
        parts.append(
            f"<p class='bad suspicious'>suspicious (an attempt on the verdict; left out of training): "
            f"{_e(report.suspicious)}</p>"
        )
    if report.reason:
        parts.append(f"<p>reason: {_e(report.reason)}</p>")
    if report.tests:
        rows = "".join(
            f"<tr><td class='text'>{_e(case.name)}</td>"
            f"<td class='text {OUTCOME_CLASS[case.outcome]}'>{_e(case.outcome)}</td>"
            f"<td class='text'>{_e(case.message)}</td></tr>"
            for case in report.tests
        )
        header = "<tr><th class='text'>test</th><th class='text'>outcome</th><th class='text'>message</th></tr>"
        parts.append(f"<table>{header}{rows}</table>")
    for case in report.failing:
        if case.traceback:
            parts.append(
                f"<details open><summary>traceback: {_e(case.name)}</summary><pre>{_e(case.traceback)}</pre></details>"
            )
    outputs = (
        ("stdout", report.stdout, report.stdout_cut_bytes),
        ("stderr", report.stderr, report.stderr_cut_bytes),
    )
    for name, text, cut in outputs:
        if text:
            note = f" ({cut} bytes cut)" if cut else ""
            # Without per-test results, stderr is where the failure shows: open it.
            opened = " open" if name == "stderr" and not report.tests and not report.passed else ""
            parts.append(
                f"<details{opened}><summary>{name}{note}</summary><pre>{_e(text)}</pre></details>"
            )
    return "".join(parts)


def step_html(step: Step, before: dict[str, str], before_name: str, trajectory: Trajectory) -> str:
    passed = step.report is not None and step.report.passed
    status = "pass" if passed else "fail" if step.report is not None else ""
    facts = [f"<b>step {step.index}</b> · {_e(step.kind)}"]
    if step.parent is not None:
        facts.append(f"parent {step.parent}")
    if step.value is not None:
        facts.append(f"value {step.value:.3f}")
    facts.append(f"{step.prompt_tokens}+{step.completion_tokens} tokens")
    facts.append(f"model {step.model_seconds:.2f}s · sandbox {step.sandbox_seconds:.2f}s")
    if trajectory.solution_step == step.index:
        facts.append("<span class='ok'>solution</span>")
    anchor = f"{_e(trajectory.trajectory_id)}-step-{step.index}"
    parts = [f"<div class='step {status}' id='{anchor}'><p>{' · '.join(facts)}</p>"]
    if step.error:
        parts.append(f"<p class='bad'>error: {_e(step.error)}</p>")
    if step.messages:
        prompt = "\n\n".join(f"[{m.role}]\n{m.content}" for m in step.messages)
        count = _plural(len(step.messages), "message")
        parts.append(
            f"<details><summary>prompt ({count})</summary><pre>{_e(prompt)}</pre></details>"
        )
    if step.completion:
        cut = (
            " <span class='bad'>(cut at the token limit)</span>"
            if step.finish_reason == "length"
            else " <span class='bad'>(cut when the time budget ran out)</span>"
            if step.finish_reason == "time"
            else ""
        )
        parts.append(
            f"<details><summary>model reply{cut}</summary><pre>{_e(step.completion)}</pre></details>"
        )
    if step.candidate is not None:
        if step.candidate.files:
            diff = diff_html(before, step.candidate.files, before_name)
            parts.append(f"<p>candidate, against {_e(before_name)}:</p>{diff}")
        if step.candidate.diff.strip():
            parts.append(f"<p>candidate patch:</p>{_colour_diff(step.candidate.diff.splitlines())}")
        if step.candidate.explanation:
            parts.append(f"<p>explanation: {_e(step.candidate.explanation)}</p>")
    if step.report is not None:
        parts.append(report_html(step.report))
    if step.review is not None:
        verdict_class = "ok" if step.review.verdict == "accept" else "muted"
        warning = ""
        if step.reviewer_error:
            warning = " <span class='bad'>(reviewer error: accepted a failing candidate)</span>"
        parts.append(
            f"<p>review: <span class='{verdict_class}'>{_e(step.review.verdict)}</span>, "
            f"confidence {step.review.confidence:.2f}{warning}</p>"
        )
        if step.review.critique:
            parts.append(f"<pre class='critique'>{_e(step.review.critique)}</pre>")
    parts.append("</div>")
    return "".join(parts)


def timeline_html(trajectory: Trajectory) -> str:
    """Each step in order; a candidate is diffed against its parent's, else the one before."""
    original = dict(trajectory.task.files)
    by_index = {step.index: step for step in trajectory.steps}
    previous: tuple[dict[str, str], str] = (original, "the task's code")
    parts = []
    for step in trajectory.steps:
        before = previous
        parent = by_index.get(step.parent) if step.parent is not None else None
        if parent is not None and parent.candidate is not None and parent.candidate.files:
            before = ({**original, **parent.candidate.files}, f"step {parent.index}")
        parts.append(step_html(step, before[0], before[1], trajectory))
        if step.candidate is not None and step.candidate.files:
            previous = ({**original, **step.candidate.files}, f"step {step.index}")
    return "".join(parts)


def is_tree(trajectory: Trajectory) -> bool:
    """Worth drawing as a tree: nodes carry values, or some node has several children."""
    if any(step.value is not None for step in trajectory.steps):
        return True
    parents = [step.parent for step in trajectory.steps if step.parent is not None]
    return len(parents) != len(set(parents))


def tree_html(trajectory: Trajectory) -> str:
    """Nested lists: each node with its value and whether its tests passed."""
    children: dict[int | None, list[Step]] = {}
    indices = {step.index for step in trajectory.steps}
    for step in trajectory.steps:
        # A parent always comes before its child; anything else would loop, so it is a root.
        parent = step.parent if step.parent in indices and step.parent < step.index else None
        children.setdefault(parent, []).append(step)

    def node(step: Step) -> str:
        if step.report is None:
            mark = "<span class='muted'>not tested</span>"
        elif step.report.passed:
            mark = "<span class='ok'>pass</span>"
        else:
            mark = f"<span class='bad'>fail</span> ({step.report.fraction_passed:.0%} of tests)"
        value = "n/a" if step.value is None else f"{step.value:.3f}"
        best = " <span class='ok'>solution</span>" if trajectory.solution_step == step.index else ""
        label = (
            f"<a href='#{_e(trajectory.trajectory_id)}-step-{step.index}'>step {step.index}</a> "
            f"{_e(step.kind)} · value <b>{value}</b> · {mark}{best}"
        )
        below = children.get(step.index, [])
        nested = f"<ul class='tree'>{''.join(node(c) for c in below)}</ul>" if below else ""
        return f"<li class='tree-node'>{label}{nested}</li>"

    return f"<ul class='tree root'>{''.join(node(s) for s in children.get(None, []))}</ul>"


def task_html(row: dict[str, Any], trajectory: Trajectory) -> str:
    outcome_class = "ok" if row["solved"] else "bad"
    summary = (
        f"{_e(row['task_id'])} · <span class='{outcome_class}'>{_e(row['outcome'])}</span> · "
        f"{_plural(row['candidates'], 'candidate')} · {row['tokens']:,} tokens · "
        f"{row['sandbox_seconds']:.2f} sandbox s"
    )
    parts = [f"<details class='task'><summary>{summary}</summary>"]
    if trajectory.error:
        parts.append(f"<p class='bad'>error: {_e(trajectory.error)}</p>")
    spec = "<p class='muted'>none given</p>"
    if trajectory.task.spec.strip():
        spec = f"<pre>{_e(trajectory.task.spec)}</pre>"
    parts.append(f"<details><summary>specification</summary>{spec}</details>")
    if is_tree(trajectory):
        parts.append(f"<h4>search tree</h4>{tree_html(trajectory)}")
    parts.append(f"<h4>timeline</h4>{timeline_html(trajectory)}</details>")
    return "".join(parts)


def _interval(interval: dict[str, float]) -> str:
    return f"{interval['value']:.3f} <span class='muted'>[{interval['low']:.3f}, {interval['high']:.3f}]</span>"


def improvement_html(label: str, comparison: dict[str, Any], index: int) -> str:
    """An improve folder: per eval set, the rounds drawn and tabled; then what each round did."""
    parts = [f"<h2>Self-improvement: {_e(label)}</h2>"]
    for number, (eval_set, result) in enumerate(comparison["eval_sets"].items()):
        differences = {d["name"]: d for d in result["differences"]}
        header = (
            "<tr><th class='text'>model</th><th>pass@1 [95% CI]</th><th>repair rate [95% CI]</th>"
            "<th>Δ pass@1 vs base [95% CI], sign test</th><th>Δ repair rate vs base [95% CI], McNemar</th>"
            "<th>tokens</th><th>eval s</th></tr>"
        )
        lines = []
        for model in result["models"]:
            difference = differences.get(model["name"])
            lines.append(
                f"<tr class='round'><td class='text'>{_e(model['name'])}</td><td>{_interval(model['pass@1'])}</td>"
                f"<td>{_interval(model['repair_rate'])}</td>"
                f"<td class='difference'>{_e(describe_difference(difference['pass@1'])) if difference else ''}</td>"
                f"<td class='difference'>{_e(describe_difference(difference['repair_rate'])) if difference else ''}</td>"
                f"<td>{_number(model['tokens'])}</td><td>{_number(model['wall_seconds'])}</td></tr>"
            )
        parts += [
            f"<h3>{_e(eval_set)}: {result['tasks']} tasks, {result['samples']} samples each</h3>",
            f"<div class='plots'>{rounds_plot(eval_set, result, f'rounds-{index}-{number}')}</div>",
            f"<table class='rounds'>{header}{''.join(lines)}</table>",
        ]
    parts.append(
        "<p class='muted'>Intervals: percentile bootstrap over tasks (paired for differences); p: exact sign test "
        "over the tasks whose result changed (McNemar's exact test on repair rate).</p>"
    )
    phases = sorted(
        {phase for record in comparison["rounds"] for phase in record.get("seconds", {})}
    )
    header = (
        "<tr><th class='text'>round</th><th>train data</th>"
        + "".join(f"<th>{_e(p)} s</th>" for p in phases)
        + "</tr>"
    )
    lines = []
    for record in comparison["rounds"]:
        examples = record.get("training", {}).get("examples", {})
        data = (
            f"{examples.get('count', 'n/a')} examples from {examples.get('tasks', 'n/a')} tasks"
            if examples
            else "n/a"
        )
        if "pseudo_label_audit" in record:
            audit = record["pseudo_label_audit"]
            data += f"; pseudo-labels right by the hidden tests: {audit['correct']} of {audit['labelled']}"
        seconds = "".join(f"<td>{_number(record['seconds'].get(p))}</td>" for p in phases)
        lines.append(
            f"<tr class='phases'><td class='text'>{record['round']}</td><td class='text'>{_e(data)}</td>{seconds}</tr>"
        )
    parts.append(f"<h3>Phases</h3><table class='phases'>{header}{''.join(lines)}</table>")
    return "".join(parts)


def trials_plot(trials: list[dict[str, Any]], utility: str, id_prefix: str) -> str:
    """Each trial's utility (a marker per kind of trial) and the best so far, as inline SVG."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": id_prefix}):
        figure = Figure(figsize=(5.6, 3.5))
        axes = figure.add_subplot()
        for kind, marker in (("default", "s"), ("optuna", "o"), ("proposal", "^")):
            chosen = [t for t in trials if t["kind"] == kind]
            axes.scatter(
                [t["number"] for t in chosen],
                [t["utility"] for t in chosen],
                marker=marker,
                label=kind,
            )
        axes.step(
            [t["number"] for t in trials],
            [t["best_so_far"] for t in trials],
            where="post",
            linewidth=1.5,
            label="best so far",
        )
        axes.set_xlabel("trial")
        axes.set_ylabel(f"utility on dev ({utility})")
        axes.set_title("The search")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
        return _inline_svg(figure, id_prefix)


def tune_html(label: str, result: dict[str, Any], index: int) -> str:
    """A tune folder: the trials drawn and tabled, the proposals, the evaluation."""
    settings, proposals, evaluation = result["settings"], result["proposals"], result["evaluation"]
    trials = "".join(
        f"<tr><td>{t['number']}</td><td class='text'>{_e(t['kind'])}</td>"
        f"<td>{t['utility']:.4g}</td><td>{t['best_so_far']:.4g}</td></tr>"
        for t in result["trials"]
    )
    refused = "".join(
        f"<tr><td class='text'>{_e(kind)}</td><td>{count}</td></tr>"
        for kind, count in sorted(proposals["refused_by_kind"].items())
    )
    strategies = "".join(
        f"<tr><td class='text'>{_e(name)}</td><td>{_interval(entry['repair_rate'])}</td>"
        f"<td>{entry['utility']:.4g}</td><td>{_number(entry['tokens'])}</td>"
        f"<td>{_number(entry['wall_seconds'])}</td></tr>"
        for name, entry in evaluation["strategies"].items()
    )
    if "difference" in evaluation:
        d = evaluation["difference"]
        verdict = (
            f"tuned − default: {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], "
            f"sign test p={d['p_value']:.3g} ({d['gained']} tasks gained, {d['lost']} lost)"
        )
    else:
        verdict = "The default stayed best: there is nothing to compare."
    return "".join(
        [
            f"<h2>Strategy tuning: {_e(label)}</h2>",
            f"<p>{_e(settings['model'])}, utility {_e(settings['utility'])}, "
            f"{result['tasks']['dev']} dev and {result['tasks']['eval']} eval tasks; "
            f"best trial {result['best_trial']}.</p>",
            f"<div class='plots'>{trials_plot(result['trials'], settings['utility'], f'tune-{index}')}</div>",
            "<table class='trials'><tr><th>trial</th><th class='text'>kind</th>"
            f"<th>utility</th><th>best so far</th></tr>{trials}</table>",
            f"<h3>Improver proposals: {proposals['made']} made, {proposals['accepted']} accepted, "
            f"{proposals['refused']} refused</h3>",
            f"<table class='refused'><tr><th class='text'>refused as</th><th>proposals</th></tr>{refused}</table>"
            if refused
            else "",
            f"<h3>Eval: {evaluation['tasks']} tasks never seen by the tuning</h3>",
            "<table class='strategies'><tr><th class='text'>strategy</th><th>repair rate [95% CI]</th>"
            f"<th>utility</th><th>tokens</th><th>seconds</th></tr>{strategies}</table>",
            f"<p>{_e(verdict)}</p>",
        ]
    )


def page_start(title: str) -> list[str]:
    return [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]


def render(
    runs: list[Run],
    improvements: list[tuple[str, dict[str, Any]]] = (),
    tunes: list[tuple[str, dict[str, Any]]] = (),
) -> str:
    title = "selfrepair report: " + ", ".join(
        [label for label, _ in [*improvements, *tunes]] + [run.label for run in runs]
    )
    sections = page_start(title)
    for index, (label, comparison) in enumerate(improvements):
        sections.append(improvement_html(label, comparison, index))
    for index, (label, result) in enumerate(tunes):
        sections.append(tune_html(label, result, index))
    if not runs:
        sections.append("</body></html>")
        return "\n".join(sections)
    sections += [
        "<h2>Summary</h2>",
        summary_table(runs),
        "<p class='muted'>pass@1: the first candidate passed; pass@k: one of the first k did "
        "(k = the most candidates any task used); tokens per solved task: all tokens spent "
        "divided by the tasks solved.</p>",
    ]
    for run in runs:
        if run.config:
            sections.append(f"<p>{_e(run.label)}:</p>{config_list(run)}")
    sections += [
        "<h2>Repair rate</h2><div class='plots'>",
        candidates_plot(runs),
        tokens_plot(runs),
        "</div>",
    ]
    for run in runs:
        sections.append(f"<h2>Tasks: {_e(run.label)}</h2>")
        for row in run.rows:
            sections.append(task_html(row, run.trajectories[row["trajectory_id"]]))
    sections.append("</body></html>")
    return "\n".join(sections)


def write_report(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Read the run directories (and improve folders), write the page (atomically), return
    where it went."""
    if not run_dirs:
        raise SelfRepairError("give at least one run directory")
    improvements = [
        (str(Path(d)), read_comparison(Path(d) / COMPARISON))
        for d in run_dirs
        if (Path(d) / COMPARISON).is_file()
    ]
    tunes = [(str(Path(d)), read_tune(Path(d))) for d in run_dirs if is_tune(Path(d))]
    runs = [
        load_run(Path(directory))
        for directory in run_dirs
        if not (Path(directory) / COMPARISON).is_file() and not is_tune(Path(directory))
    ]
    _unique_labels(runs)
    out = Path(out) if out is not None else Path(run_dirs[0]) / REPORT_NAME
    check_output_file(out)
    write_atomically(out, render(runs, improvements, tunes))
    return out


def is_tune(folder: Path) -> bool:
    return (folder / TUNE_STUDY).is_file()


def read_tune(folder: Path) -> dict[str, Any]:
    """A tune folder's report.json (written when its evaluation finished)."""
    path = folder / TUNE_REPORT
    if not path.is_file():
        raise SelfRepairError(f"{folder}: a tune run without a report yet (it has not finished)")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SelfRepairError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    if not isinstance(result, dict) or not {"trials", "proposals", "evaluation"} <= set(result):
        raise SelfRepairError(f"{path} is not a tune report (trials, proposals, evaluation)")
    return result
