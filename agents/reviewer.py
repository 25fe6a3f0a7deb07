"""The reviewer: reads a candidate (whole files, or a diff to a repository) and its test
report, and gives a Review (accept or refine, a critique that points at the fault, a
confidence), recorded on the step it reviewed.

Its verdict is advice, never the ground truth: the loop checks an "accept" against the tests.
Replies are parsed leniently (a JSON object, `KEY: value` lines, or loose words); a reply with
no verdict at all becomes "refine" with low confidence, and the critique says so.
"""

from __future__ import annotations

import json
import re

from selfrepair.agents.feedback import describe_report, shorten_diff
from selfrepair.agents.models.protocol import Model
from selfrepair.agents.prompts import render
from selfrepair.agents.solver import shown_code

from selfrepair.settings import Feedback, Prompts
from selfrepair.types import Message, Review, Step, Task

UNPARSED_CONFIDENCE = 0.1
DEFAULT_CONFIDENCE = 0.5
CRITIQUE_CHARS = 600

_ACCEPT_WORDS = {"accept", "accepted", "correct", "approve", "approved", "yes", "pass"}
_REFINE_WORDS = {"refine", "reject", "rejected", "incorrect", "wrong", "no", "fail", "revise"}
_VERDICT = re.compile(r"verdict\W{0,5}(\w+)", re.IGNORECASE)
_CONFIDENCE = re.compile(r"confidence\W{0,5}(\d+(?:\.\d+)?|\.\d+)\s*(%?)", re.IGNORECASE)
_CRITIQUE = re.compile(r"critique\s*[:=-]\s*(.*)", re.IGNORECASE | re.DOTALL)
_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


def review(
    model: Model,
    task: Task,
    step: Step,
    *,
    max_tokens: int = 128,
    seed: int | None = None,
    prompts: Prompts | None = None,
    feedback: Feedback | None = None,
    timeout: float | None = None,
) -> None:
    """Review an executed step: its code against the specification and its test report, in
    one model call of at most `timeout` seconds. The verdict, the exchange and its cost are
    recorded on the step."""
    prompts = prompts or Prompts()
    base = task.files | step.candidate.files
    path, code = shown_code(task, base, step.candidate)
    prompt = render(
        "review",
        prompts.review,
        spec=task.spec.strip(),
        path=path,
        code=code,
        feedback=describe_report(step.report, feedback),
    )
    ask(model, step, prompt, max_tokens, seed, prompts.review_system, timeout)


def review_diff(
    model: Model,
    task: Task,
    step: Step,
    *,
    max_tokens: int = 128,
    seed: int | None = None,
    timeout: float | None = None,
) -> None:
    """Review an executed step of a repository task: its diff against the issue and its test
    report. Recorded on the step as `review` records it."""
    prompt = render(
        "issue_review",
        issue=task.spec.strip(),
        diff=shorten_diff(step.candidate.diff),
        feedback=describe_report(step.report),
    )
    ask(model, step, prompt, max_tokens, seed, timeout=timeout)


def ask(
    model: Model,
    step: Step,
    prompt: str,
    max_tokens: int,
    seed: int | None,
    system: str | None = None,
    timeout: float | None = None,
) -> None:
    """Ask for a review of `step` with `prompt`, under the `system` template (the shipped
    one by default), and record it on the step."""
    messages = [
        Message(role="system", content=render("review_system", system)),
        Message(role="user", content=prompt),
    ]
    generation = model.generate(
        messages, n=1, temperature=0.0, max_tokens=max_tokens, seed=seed, timeout=timeout
    )
    completion = generation.completions[0]
    if completion.finish_reason == "time":  # half a review is no verdict
        step.review = Review(
            verdict="refine",
            critique="review cut when the time budget ran out",
            confidence=UNPARSED_CONFIDENCE,
        )
    else:
        step.review = parse_review(completion.text)
    step.review_messages = messages
    step.review_completion = completion.text
    step.review_finish_reason = completion.finish_reason
    step.prompt_tokens += generation.prompt_tokens
    step.completion_tokens += generation.completion_tokens
    step.model_seconds += generation.seconds
    # The tests decide, never the reviewer: its "accept" of a candidate whose tests fail is
    # its error, recorded for the accounting and never allowed to end a loop.
    step.reviewer_error = step.review.verdict == "accept" and not step.report.passed


def parse_review(text: str) -> Review:
    """A Review from whatever the reviewer wrote."""
    fields = _json_fields(text)
    verdict = _verdict(str(fields.get("verdict", ""))) if fields else None
    if verdict is None:
        match = _VERDICT.search(text)
        verdict = _verdict(match.group(1)) if match else _loose_verdict(text)
    if verdict is None:
        note = "reviewer reply could not be parsed (no verdict)"
        return Review(
            verdict="refine",
            critique=f"{note}: {text.strip()[:CRITIQUE_CHARS]}",
            confidence=UNPARSED_CONFIDENCE,
        )
    confidence = _confidence(fields.get("confidence")) if fields else None
    if confidence is None:
        match = _CONFIDENCE.search(text)
        confidence = _number(match.group(1), percent=bool(match.group(2))) if match else None
    critique = str(fields.get("critique", "")) if fields else ""
    if not critique:
        match = _CRITIQUE.search(text)
        critique = match.group(1) if match else _VERDICT.sub("", _CONFIDENCE.sub("", text))
    return Review(
        verdict=verdict,
        critique=critique.strip()[:CRITIQUE_CHARS],
        confidence=DEFAULT_CONFIDENCE if confidence is None else confidence,
    )


def _json_fields(text: str) -> dict:
    for match in _JSON_OBJECT.finditer(text):
        try:
            value = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return {str(k).lower(): v for k, v in value.items()}
    return {}


def _verdict(word: str) -> str | None:
    word = word.strip().lower()
    if word in _ACCEPT_WORDS:
        return "accept"
    if word in _REFINE_WORDS:
        return "refine"
    return None


def _loose_verdict(text: str) -> str | None:
    """ "accept" or "refine" appearing alone in the reply; both (or neither) is no verdict."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    accept, refine = "accept" in words, "refine" in words
    return "accept" if accept and not refine else "refine" if refine and not accept else None


def _confidence(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(str(value), percent=False)
    if isinstance(value, str):
        match = re.match(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(%?)", value)
        return _number(match.group(1), percent=bool(match.group(2))) if match else None
    return None


def _number(digits: str, percent: bool) -> float:
    value = float(digits)
    if percent or value > 1:
        value /= 100  # "85%" or "85" on a 0-100 scale
    return min(max(value, 0.0), 1.0)
