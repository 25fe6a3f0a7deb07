"""Where code runs: Docker (the default) and a local fallback; test-result parsing."""
