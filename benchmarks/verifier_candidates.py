"""A scripted mix of candidates for the verifier's data (benchmarks/verifier.py), where sampling
them from SmolLM2 takes too long on a CPU: for each single-operator bug of
benchmarks/operator_bugs.py, the correct function and a seeded draw of its other
one-operator mutants (some of which its tests do not catch: passing candidates too), in a
seeded order, as the replies of a `scripted:` model keyed by "(FILE)", the task's file as its prompts name it (in
every prompt of the task, solver's and reviewer's, and in no other task's). Run through
`selfrepair bench quixbugs --strategy best-of-n --model scripted:REPLIES`, the sandbox labels
every one.

    benchmarks/verifier_candidates.py --out DIR [--eval-functions 20] [--candidates 6]

writes DIR/train.jsonl and DIR/eval.jsonl (split by function) and DIR/replies.json, and
prints one JSON line of counts.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_bugs import mutants, write_split  # noqa: E402

# Enough verdicts for the reviewer when several of a task's candidates pass (best-of-n asks it
# to break the tie); the scripted model takes them from the same task's list.
REVIEWS = ["VERDICT: accept\nCONFIDENCE: 0.5\nCRITIQUE: none"] * 8


def candidates(record: dict, count: int, rng: random.Random) -> list[str]:
    """The correct program and count - 1 mutants of it (never the buggy program itself), all
    formatted by ast.unparse alike, shuffled."""
    correct = ast.unparse(ast.parse(record["solution"])) + "\n"
    buggy = ast.unparse(ast.parse(record["buggy_program"])) + "\n"
    others = sorted({m for m in mutants(correct) if m not in (correct, buggy)})
    chosen = [correct, *rng.sample(others, min(count - 1, len(others)))]
    rng.shuffle(chosen)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eval-functions", type=int, default=20)
    parser.add_argument("--per-function", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, held_out, n_train, n_eval = write_split(args.out, args.eval_functions, args.per_function)
    rng = random.Random(args.seed)
    replies: dict[str, list[str]] = {}
    for path in (train, held_out):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            programs = candidates(record, args.candidates, rng)
            replies[f"({record['name']}.py)"] = [
                f"```python\n{program}```" for program in programs
            ] + REVIEWS
    (args.out / "replies.json").write_text(json.dumps(replies, indent=1))
    print(json.dumps({"train_tasks": n_train, "eval_tasks": n_eval, "keys": len(replies)}))


if __name__ == "__main__":
    main()
