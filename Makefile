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

# The main job: fetch MovieLens-100k, load it into the embedded SQLite store, train and
# evaluate the models and the ranking funnel with RecBole's protocol (report printed and
# written to reports/), publish ALS, then the funnel (served) to the registry; give the MovieLens users a seeded SYNTHETIC social graph (MovieLens
# has none; homophilous on occupation), evaluate friend suggestions on it, train the friend
# funnel; serve the API on localhost. API keys: RECFUNNEL_WRITE_KEY /
# RECFUNNEL_READ_KEY from the environment, or generated once into .recfunnel-keys (mode 600).
STORE ?= sqlite:///data/recfunnel.db
HOST  ?= 127.0.0.1
PORT  ?= 8000
run: $(STAMP)
	$(BIN)/recfunnel datasets fetch ml-100k
	mkdir -p data
	$(BIN)/recfunnel ingest --dataset ml-100k --store $(STORE)
	$(BIN)/recfunnel evaluate --dataset $(STORE) --split ro:0.8,0.1,0.1 --seed 2020 \
		--models pop,itemknn,ease,als,bpr,lightgcn --pipeline configs/funnel.toml \
		--output reports/ml-100k.json --plot reports/ml-100k.png
	$(BIN)/recfunnel train --model als --dataset $(STORE) --registry models
	$(BIN)/recfunnel train --pipeline configs/funnel.toml --dataset $(STORE) --registry models
	$(BIN)/recfunnel synth-social-graph --store $(STORE) --community occupation --seed 0
	$(BIN)/recfunnel evaluate --task link-prediction --dataset $(STORE) --community occupation \
		--models popular_users,mutual_friends,adamic_adar,ppr,profile_similarity,friend_funnel \
		--output reports/ml-100k-friends.json
	$(BIN)/recfunnel train-friends --dataset $(STORE) --output models/friends \
		--param community_column=occupation
	@if [ -z "$$RECFUNNEL_WRITE_KEY" ] && [ ! -f .recfunnel-keys ]; then (umask 077; \
		$(BIN)/python -c 'import secrets; t = secrets.token_urlsafe; \
		print(f"RECFUNNEL_WRITE_KEY={t(24)}\nRECFUNNEL_READ_KEY={t(24)}")' > .recfunnel-keys); fi
	@if [ -z "$$RECFUNNEL_WRITE_KEY" ]; then set -a; . ./.recfunnel-keys; set +a; \
		echo "API keys: see .recfunnel-keys (export them to use the curl lines below)"; fi; \
		$(BIN)/recfunnel serve --store $(STORE) --model-dir models --friends-model models/friends \
		--feature-log-dir data/feature-logs --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/recfunnel/core
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
