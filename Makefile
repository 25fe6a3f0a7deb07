# The two quick-start commands: `make demo` repairs the example, `make test` runs the tests.
# Each installs what it needs first.
.PHONY: install sandbox demo test lint

install:
	bash scripts/install.sh

sandbox: install
	bash scripts/sandbox.sh

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: install
	bash scripts/test.sh

demo: sandbox
	bash scripts/demo.sh
