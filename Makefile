# The two commands a fresh clone needs:
#   make run    set up .venv from nothing, then run all three phases on the embedded demo
#   make test   set up .venv from nothing, then run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
RUN_DIR ?= results/demo

.PHONY: run test venv slurm-tools browser-tools dry-run install-profiles clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

run: venv
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --config run_dir=$(RUN_DIR)

dry-run: venv
	$(BIN)/snakemake --profile profiles/local -n --config run_dir=$(RUN_DIR)

test: venv slurm-tools browser-tools
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
