# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The main job: fetch MovieLens-100k, train and evaluate the models with RecBole's protocol.
run: $(STAMP)
	$(BIN)/recfunnel datasets fetch ml-100k
	$(BIN)/recfunnel evaluate --dataset ml-100k --split ro:0.8,0.1,0.1 --seed 2020 \
		--models pop,itemknn,ease,als,bpr,lightgcn --output reports/ml-100k.json --plot reports/ml-100k.png

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/recfunnel/core
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
