"""Problem statements: what a solver is told about a synthesized bug.

From the failing tests alone (their names, assertion messages and tracebacks as the buggy
code produced them), never from the mutation: the statement cannot show the fix, because
nothing it is made from holds the fixed code. With a model (SWE-smith's issue generation) the
model writes an issue from the same material; it too never sees the diff.
"""

from __future__ import annotations

import re

from selfrepair.agents.models.protocol import Model

from selfrepair.types import Message

TRACEBACK_LINES = 40
SHOWN_FAILURES = 2
ISSUE_TOKENS = 320


def trimmed(traceback: str, lines: int = TRACEBACK_LINES) -> str:
    """The end of a traceback, where the assertion and the failing line are."""
    kept = [line.rstrip() for line in traceback.strip().splitlines()]
    if len(kept) > lines:
        kept = ["..."] + kept[-lines:]
    return "\n".join(kept)


def from_tests(package: str, failures: list[dict], failing: list[str]) -> str:
    """A plain report: which tests fail and how, with the end of each traceback."""
    count = len(failing)
    parts = [
        f"{count} test{'s' if count != 1 else ''} of {package} fail{'s' if count == 1 else ''}."
    ]
    for failure in failures[:SHOWN_FAILURES]:
        message = (failure.get("message") or "").strip().splitlines()
        parts.append(f"`{failure['name']}` fails" + (f": {message[0][:300]}" if message else "."))
        if failure.get("traceback", "").strip():
            parts.append("```\n" + trimmed(failure["traceback"]) + "\n```")
    rest = [name for name in failing if name not in {f["name"] for f in failures[:SHOWN_FAILURES]}]
    if rest:
        shown = ", ".join(f"`{name}`" for name in rest[:8])
        parts.append(
            f"Also failing: {shown}" + (f" and {len(rest) - 8} more." if len(rest) > 8 else ".")
        )
    return "\n\n".join(parts)


ISSUE_SYSTEM = (
    "You are a user of a Python library filing a bug report on its issue tracker. Write clearly "
    "and briefly. You have not read the library's code and you do not know the cause."
)


def issue_prompt(package: str, failures: list[dict], failing: list[str]) -> list[Message]:
    evidence = from_tests(package, failures, failing)
    return [
        Message(role="system", content=ISSUE_SYSTEM),
        Message(
            role="user",
            content=(
                f"Some of the tests of {package} fail. Here is what they show:\n\n{evidence}\n\n"
                "Write a GitHub issue about the behaviour these tests reveal: a title line, what you did (a short "
                "code example), what you expected, and what happened instead. Do not guess at the cause and do "
                "not propose a fix."
            ),
        ),
    ]


def written_issue(
    model: Model, package: str, failures: list[dict], failing: list[str]
) -> str | None:
    """An issue the model writes from the failing tests, with the failing tests' names after
    it (so a weak model's issue still points at the evidence); None when it wrote nothing usable."""
    generation = model.generate(
        issue_prompt(package, failures, failing), n=1, temperature=0.0, max_tokens=ISSUE_TOKENS
    )
    text = generation.completions[0].text.strip() if generation.completions else ""
    text = re.sub(r"^```\w*\n|\n```$", "", text).strip()
    if len(text) < 40 or len(re.findall(r"[A-Za-z]{3,}", text)) < 6:
        return None
    names = ", ".join(f"`{name}`" for name in failing[:8]) + (
        f" and {len(failing) - 8} more" if len(failing) > 8 else ""
    )
    return f"{text}\n\nFailing tests: {names}."
