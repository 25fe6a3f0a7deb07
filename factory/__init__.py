"""The task factory (`selfrepair synth`): validated bugs synthesized in real Python packages.

  sources    a SOURCE (PyPI requirement, sdist, git repository, directory) -> its files and
             declared requirements; one without tests or code is refused
  mutations  function units and eleven mutation families, found with tree-sitter
  rewrite    model-written bugs: a model re-implements a function from its signature and
             docstring (SWE-smith's LM rewrite)
  validate   the sandbox runs: the baseline suite twice (stable tests, which functions each
             test calls), then each mutant against the tests that call its function
  problem    problem statements from the failing tests, or written by a model from them
  output     git mirrors, SWE-bench instances, function-level tasks, train/eval splits
  pipeline   synthesize(): all of it, resumable, `jobs` functions at a time
  harness/   files that run inside the sandbox: the pytest plugin of the validation runs
             and the splice step of function-level tasks

It stands on the core (types, loaders, errors), the sandbox and the agents; only the CLI
imports it.
"""
