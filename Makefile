.PHONY: demo test fast lint pictures
demo:  ## set up and restore the sample photos, embedded (no servers)
	scripts/demo.sh
test:  ## set up and run the whole test suite against real services
	scripts/test.sh
fast:  ## only the tests that need no service
	scripts/test.sh --fast
lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy
pictures:  ## regenerate the before/after pictures of docs/how-it-works.md
	.venv/bin/python scripts/how-it-works-pictures.py
