# The two quick-start commands: `make demo` repairs the example, `make test` runs the tests.
# Each installs what it needs first.
.PHONY: install demo test

install:
	bash scripts/install.sh

test: install
	bash scripts/test.sh

demo: install
	bash scripts/demo.sh
