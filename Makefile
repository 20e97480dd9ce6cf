# The two commands a fresh clone needs:
#   make run    set up .venv from nothing, then run all three phases on the embedded demo
#   make test   set up .venv from nothing, then run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
RUN_DIR ?= results/demo

.PHONY: run test check lock mypy-baseline venv dev-venv slurm-tools browser-tools dry-run install-profiles clean-demo

venv: $(VENV)/.installed

# Exactly the runtime's locked versions (all `make run` needs), then this project without deps.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The tests' and checks' tools on top: requirements-dev.lock is the runtime's pins plus the extras.
dev-venv: $(VENV)/.dev-installed

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.lock
	$(BIN)/pip install --quiet -r requirements-dev.lock
	touch $@

# After editing pyproject.toml's dependencies: re-resolve the locks (existing pins are kept unless
# pyproject.toml asks otherwise) and rewrite envs/aoideft.yaml from them (tools/lockfiles.py).
PIP_COMPILE = $(BIN)/pip-compile --quiet --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: dev-venv
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --extra test --extra dev --constraint requirements.lock --output-file requirements-dev.lock pyproject.toml
	$(BIN)/python tools/lockfiles.py

# Lint, format and type checks (run by `make test`, so by CI): ruff and mypy on the Python, snakefmt
# and Snakemake's linter on the workflow, the locks and the conda environment in step.
check: dev-venv
	$(BIN)/ruff check scripts tests benchmarks tools
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint
	$(BIN)/python tools/lockfiles.py --check
	$(BIN)/python tools/mypy_baseline.py

# After fixing type errors: shrink mypy-baseline.txt to what remains (it may only shrink).
mypy-baseline: dev-venv
	$(BIN)/python tools/mypy_baseline.py --update

run: venv
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --config run_dir=$(RUN_DIR)

dry-run: venv
	$(BIN)/snakemake --profile profiles/local -n --config run_dir=$(RUN_DIR)

test: dev-venv slurm-tools browser-tools check
	bash tests/run_tests.sh

# slurm-wlm + munge for the SLURM integration test (root + apt-get only; otherwise it is skipped).
slurm-tools:
	bash tests/install_slurm.sh

# Debian's chromium for the report's browser test (root + apt-get only; otherwise it is skipped).
browser-tools:
	bash tests/install_browser.sh

# One-time step so `snakemake --profile slurm ...` finds the profile from any directory.
install-profiles:
	mkdir -p $(HOME)/.config/snakemake
	ln -sfn $(CURDIR)/profiles/slurm $(HOME)/.config/snakemake/slurm
	ln -sfn $(CURDIR)/profiles/local $(HOME)/.config/snakemake/aoi-local
	@echo "installed: ~/.config/snakemake/slurm -> profiles/slurm"
