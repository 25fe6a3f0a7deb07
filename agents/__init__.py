"""The agents (solver, reviewer, refiner, editor, tester) and their prompts. What they stand on
lives beside them: `agents.models` (the Model protocol, the backends, adapters, serving) and
`agents.code` (extraction, edits, localisation, repository access)."""
