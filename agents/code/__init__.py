"""Tools for code: candidates extracted from a model's reply (extract), SEARCH/REPLACE edits
applied to files (edits), where in a repository an issue lives (localise), and repositories
through git (repo)."""
