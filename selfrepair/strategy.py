"""A repair strategy as one typed value: which graph, how it samples, what it asks (prompt
templates per role), how it shows test results, and what it may spend. `tune` searches over
it; `Strategy.default()` is what `fix` and `bench` do without one.

A strategy can come from a model (`tune`'s improver), so a proposed one is screened
(`screen`) before it is used: it is data validated against this schema, and it may change how
the model is asked and nothing about how the answer is judged. Refused, each reason counted
by kind:

  not-json             no JSON object in the reply
  sandbox-or-verdict   a field that names the tests, the sandbox, a timeout, the verdict or
                       the utility (nothing of the sort is in the schema: the tests, their
                       command and limits belong to the task and the run, never the strategy)
  outside-schema       any other field the schema does not have
  beyond-limits        a value outside its range, or a budget above the run's
  invalid-value        a value of the wrong type or not among the choices
  improver-frozen      a new improver prompt while the recursive step is off
  unsafe-template      a template that does more than fill in its variables (attribute access,
                       calls, imports, includes)
  template-syntax      a template Jinja cannot parse
  unknown-placeholder  a template that names a variable its role is not given
  missing-placeholder  a template that no longer shows what its role must show (the code,
                       the test results), also when it hides it behind a condition
  instructs-tests-away a template that asks the model to change, skip or silence the tests
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.nodes
import jinja2.sandbox
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfrepair.errors import SelfRepairError
from selfrepair.files import read_input
from selfrepair.settings import Budget, Feedback, Prompts, Sampling

GRAPHS = ("best-of-n", "refine", "tree")  # the function-level strategies (graphs.run)
TEMPLATE_CHARS = 4000

# Per role: the variables its template is given, and those it must show.
ROLE_VARIABLES: dict[str, tuple[set[str], set[str]]] = {
    "system": (set(), set()),
    "solve": ({"spec", "path", "code", "feedback", "generate"}, {"code"}),
    "refine": ({"spec", "path", "code", "feedback", "critique"}, {"code", "feedback"}),
    "review_system": (set(), set()),
    "review": ({"spec", "path", "code", "feedback"}, {"code", "feedback"}),
    "improver": (
        {"strategy", "utility", "failures", "fields", "roles"},
        {"strategy", "failures"},
    ),
}
# The Jinja a template may use: text, variables, conditions and a few text filters.
TEMPLATE_NODES = (
    jinja2.nodes.Template,
    jinja2.nodes.Output,
    jinja2.nodes.TemplateData,
    jinja2.nodes.Name,
    jinja2.nodes.Const,
    jinja2.nodes.If,
    jinja2.nodes.Not,
    jinja2.nodes.And,
    jinja2.nodes.Or,
    jinja2.nodes.Filter,
)
TEMPLATE_FILTERS = {"trim", "indent"}  # layout only: the text shown stays as given
# Words a field outside the schema is refused under as an attempt on the judging.
JUDGING_WORDS = (
    "test",
    "cmd",
    "command",
    "timeout",
    "second",
    "sandbox",
    "docker",
    "network",
    "verdict",
    "expect",
    "utility",
    "judge",
    "score",
    "pass",
    "limit",
    "exec",
)
_VERB = (
    r"(delet|remov|skip|disabl|comment(?:ing)? out|rewrit|edit|modif|overwrit|bypass|ignor"
    r"|monkeypatch|mock|stub|xfail|silenc|suppress|patch|replac|weaken|drop)\w*"
)
_TESTS = r"(tests?|assert\w*|pytest|conftest|unittest|test suite|checks?)\b"
TESTS_AWAY = [
    re.compile(_VERB + r"\W+(?:\w+\W+){0,4}?" + _TESTS, re.IGNORECASE),
    re.compile(
        r"sys\.exit|os\._exit|exit\(0\)|conftest|pytest\.(?:skip|exit|xfail)|sys\.modules"
        r"|__import__|builtins|atexit|signal\.",
        re.IGNORECASE,
    ),
]


class Strategy(BaseModel):
    """Everything a repair run may vary short of the model and the tests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The descriptions are what the improver reads of each field (agents.improver).
    graph: Literal["best-of-n", "refine", "tree"] = Field(
        "best-of-n", description="the search: sample and test, fix from test output, or a tree"
    )
    temperature: float = Field(0.8, ge=0.0, le=2.0, description="sampling temperature")
    reply_tokens: int = Field(320, ge=16, le=2048, description="longest reply")
    review_tokens: int = Field(128, ge=16, le=1024, description="longest review")
    samples: int = Field(8, ge=1, le=64, description="best-of-n: candidates per batched call")
    children: int = Field(1, ge=1, le=16, description="tree: candidates per expansion")
    exploration: float = Field(1.0, ge=0.0, le=10.0, description="tree: the UCT constant")
    test_weight: float = Field(
        0.7, ge=0.0, le=1.0, description="tree: the tests' share of a node's value"
    )
    review_ties: bool = Field(
        True, description="best-of-n: the reviewer ranks several passing candidates"
    )
    max_candidates: int | None = Field(
        None, ge=1, description="candidates tested per task (null: the run's budget)"
    )
    max_tokens: int | None = Field(
        None, ge=1, description="tokens per task, all replies together (null: the run's budget)"
    )
    feedback: Feedback = Feedback()
    prompts: Prompts = Prompts()

    @classmethod
    def default(cls) -> Strategy:
        """What a run without a strategy does."""
        return cls()

    def sampling(self, seed: int | None = None) -> Sampling:
        return Sampling(
            temperature=self.temperature,
            max_tokens=self.reply_tokens,
            review_max_tokens=self.review_tokens,
            samples=self.samples,
            children=self.children,
            test_weight=self.test_weight,
            exploration=self.exploration,
            review_ties=self.review_ties,
            seed=seed,
            prompts=self.prompts,
            feedback=self.feedback,
        )

    def budget(self, limit: Budget) -> Budget:
        """The run's budget, narrowed by this strategy's own (never widened)."""
        return dataclasses.replace(
            limit,
            max_candidates=min(self.max_candidates or limit.max_candidates, limit.max_candidates),
            max_tokens=min(self.max_tokens or limit.max_tokens, limit.max_tokens),
        )


def read_strategy(path: Path) -> Strategy:
    """A strategy file (JSON, as `tune` writes it), screened as a proposal is."""
    text = read_input(path, f"--strategy-file {path}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SelfRepairError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    # The run's budget narrows the file's later (Strategy.budget); here no budget binds.
    unbounded = Budget(max_candidates=2**31, max_tokens=2**62)
    screened = screen(data, Strategy.default(), unbounded, recursive=True)
    if screened.strategy is None:
        raise SelfRepairError(f"{path} is not a usable strategy: {'; '.join(screened.reasons)}")
    return screened.strategy


@dataclasses.dataclass(frozen=True)
class Screened:
    """A proposal's fate: the strategy it makes, or None and why not (each reason with its
    kind, `kinds`)."""

    strategy: Strategy | None
    kinds: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


def proposal_data(reply: str) -> object:
    """The JSON a reply proposes: its first ```json block, else its outermost {...}."""
    fenced = re.search(r"```(?:json)?\s*\n(.*?)```", reply, re.DOTALL)
    candidates = [fenced.group(1)] if fenced else []
    start, end = reply.find("{"), reply.rfind("}")
    if start != -1 and end > start:
        candidates.append(reply[start : end + 1])
    for text in candidates:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            continue
    return None


def screen(
    proposal: object, current: Strategy, limit: Budget, *, recursive: bool = False
) -> Screened:
    """Check a proposal (the fields it changes, applied to `current`) against the schema and
    the rules above; a proposal with any problem is refused whole."""
    if not isinstance(proposal, dict):
        return Screened(None, ("not-json",), ("not-json: the proposal is not a JSON object",))
    problems: list[tuple[str, str]] = []
    merged = merge(current.model_dump(), proposal)
    try:
        strategy = Strategy.model_validate(merged)
    except ValidationError as error:
        problems += [schema_problem(detail) for detail in error.errors()]
        strategy = None
    for name, value in (("max_candidates", limit.max_candidates), ("max_tokens", limit.max_tokens)):
        asked = merged.get(name)
        if isinstance(asked, int) and asked > value:
            problems.append(("beyond-limits", f"{name} above the run's budget of {value}"))
    # Every template that changed is checked, also when another field already failed, so each
    # attempt is counted.
    prompts = merged.get("prompts") if isinstance(merged.get("prompts"), dict) else {}
    for role, text in prompts.items():
        if role not in ROLE_VARIABLES or not isinstance(text, str):
            continue  # the schema's problem, counted above
        if text == getattr(current.prompts, role):
            continue
        if role == "improver" and not recursive:
            problems.append(
                ("improver-frozen", "the improver's prompt changes only with --recursive")
            )
        problems += [
            (kind, f"prompts.{role}: {why}") for kind, why in template_problems(role, text)
        ]
    if problems:
        return Screened(
            None, tuple(kind for kind, _ in problems), tuple(f"{k}: {w}" for k, w in problems)
        )
    return Screened(strategy)


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`base` with `change` applied, nested objects field by field."""
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def schema_problem(detail: dict[str, Any]) -> tuple[str, str]:
    where = ".".join(str(part) for part in detail["loc"])
    if detail["type"] == "extra_forbidden":
        name = str(detail["loc"][-1]).lower()
        if any(word in name for word in JUDGING_WORDS):
            return (
                "sandbox-or-verdict",
                f"{where}: the strategy cannot change how repairs are judged",
            )
        return "outside-schema", f"{where}: no such field"
    if detail["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return "beyond-limits", f"{where}: {detail['msg']}"
    return "invalid-value", f"{where}: {detail['msg']}"


def template_problems(role: str, text: str) -> list[tuple[str, str]]:
    """What is wrong with `text` as the template of `role` (nothing: an empty list)."""
    if len(text) > TEMPLATE_CHARS:
        return [("beyond-limits", f"longer than {TEMPLATE_CHARS} characters")]
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    try:
        tree = environment.parse(text)
    except jinja2.TemplateSyntaxError as error:
        return [("template-syntax", error.message or "cannot be parsed")]
    problems = []
    for node in tree.find_all(jinja2.nodes.Node):
        if not isinstance(node, TEMPLATE_NODES) or (
            isinstance(node, jinja2.nodes.Filter) and node.name not in TEMPLATE_FILTERS
        ):
            return [
                ("unsafe-template", f"uses {type(node).__name__}, more than text and variables")
            ]
    given, required = ROLE_VARIABLES[role]
    names = {node.name for node in tree.find_all(jinja2.nodes.Name)}
    if names - given:
        problems.append(("unknown-placeholder", f"names {', '.join(sorted(names - given))}"))
        return problems
    # Rendered with a marker in every variable, then with the optional ones empty (false): a
    # required variable whose marker does not come out of both is not always shown, whatever
    # the template seems to name.
    markers = {name: f"\x00{name}\x00" for name in given}
    template = environment.from_string(text)
    renders = [
        template.render(**markers),
        template.render(**{name: markers[name] if name in required else "" for name in given}),
    ]
    missing = sorted(name for name in required if any(markers[name] not in r for r in renders))
    if missing:
        problems.append(("missing-placeholder", f"does not show {', '.join(missing)}"))
    for pattern in TESTS_AWAY:
        match = pattern.search(text)
        if match:
            problems.append(("instructs-tests-away", f"says {match.group(0)!r}"))
            break
    return problems
