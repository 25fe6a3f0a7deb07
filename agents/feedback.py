"""Feedback for prompts: what failed and why, and the diff under repair, short enough for a
small model's context.

Tracebacks are cut to their last lines (where the assertion or the exception is) and the whole
text to a character cap; a model learns little from the hundredth line of a log.
"""

from __future__ import annotations

from selfrepair.settings import Feedback
from selfrepair.types import TestReport

DIFF_CHARS = 6000


def tail(text: str, lines: int) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept)


def describe_report(report: TestReport, form: Feedback | None = None) -> str:
    """The test report as a few lines of plain text for the refiner, reviewer and solver,
    shaped by `form` (the defaults: selfrepair.settings.Feedback)."""
    form = form or Feedback()
    if report.passed:
        count = len(report.tests)
        return f"All {count} tests pass." if count else "The tests pass."
    parts = []
    if report.timed_out:
        parts.append(f"The tests timed out after {report.wall_seconds:.0f} s (an endless loop?).")
    if report.out_of_memory:
        parts.append("The tests ran out of memory.")
    failing = report.failing
    if failing:
        parts.append(f"{len(failing)} of {len(report.tests)} tests fail:")
        for case in failing[: form.max_failures]:
            detail = tail(case.traceback or case.message, form.traceback_lines)
            parts.append(f"- {case.name}" + (f"\n{detail}" if detail else ""))
        if len(failing) > form.max_failures:
            parts.append(f"(and {len(failing) - form.max_failures} more)")
    else:
        if report.reason:
            parts.append(report.reason)
        parts.append(f"Exit status {report.exit_code}.")
        output = tail(report.stderr, form.traceback_lines) or tail(
            report.stdout, form.traceback_lines
        )
        if output:
            parts.append(output)
    text = "\n".join(parts)
    limit = form.max_chars
    return text if len(text) <= limit else "..." + text[-limit:]


def shorten_diff(diff: str) -> str:
    """A diff for a prompt: cut beyond DIFF_CHARS, and marked where it was."""
    return diff if len(diff) <= DIFF_CHARS else diff[:DIFF_CHARS] + "\n... (cut)"
