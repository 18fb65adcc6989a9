.PHONY: demo test lint
demo:  ## set up and restore the sample photos, embedded (no servers)
	scripts/demo.sh
test:  ## set up and run the whole test suite against real services
	scripts/test.sh
lint:
	.venv/bin/ruff check .
