# rlhf-nb — the two README commands:
#   make book   set up, execute every notebook (default presets), build the site
#   make test   set up, run every test (unit, notebooks in SMOKE mode, pairing, site in a browser)
# Both create .venv when missing and install the project with the pinned constraints.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# chapters executed side by side by `make book` (they share the cache, whose entries are locked);
# auto = this machine's cores + 1 (3 on the 2-core book machine), at most the number of chapters
BOOK_JOBS ?= auto
export RLHF_NB_CACHE ?= $(CURDIR)/.cache
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export JUPYTER_PLATFORM_DIRS := 1

.PHONY: book test lab setup lint format sync colab lock clean help

help:
	@echo "make book   - execute the notebooks and build the site (book/_build/html/index.html)"
	@echo "make test   - lint + all tests (unit, notebooks with SMOKE=True, pairing, site in a browser)"
	@echo "make lab    - open the book in JupyterLab (the .py chapters open as notebooks)"
	@echo "make sync   - regenerate every paired .ipynb from its .py (jupytext)"
	@echo "make colab  - point every chapter's Colab badge and install cell at pyproject's Repository URL"
	@echo "make lock   - rewrite constraints.txt from the current .venv"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[book,test]"
	@touch $(STAMP)

book: $(STAMP)
	$(BIN)/python -m rlhf_nb._site.build execute --out build/executed --jobs $(BOOK_JOBS)
	$(BIN)/python -m rlhf_nb._site.build results --executed build/executed
	$(BIN)/python -m rlhf_nb._site.build site --executed build/executed --out book
	@echo "Open: $(CURDIR)/book/_build/html/index.html"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/python -m rlhf_nb._site.lab

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

colab: $(STAMP)
	$(BIN)/python -m rlhf_nb._site.colab
	$(BIN)/jupytext --update --to ipynb notebooks/[0-9][0-9]_*.py

lock: $(STAMP)
	@{ sed -n '1,/^# a multi-GB/p' constraints.txt; echo "# Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'; \
	} > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf build book/_build .pytest_cache .ruff_cache
