"""What a rule's job imports: every job is a fresh Python process, and importing torch costs 1.5-2 s on
the 2-core demo machine, scipy 0.1-0.3 s. The data and bookkeeping jobs (about 8 a DEFT iteration) need
neither (SDG's transplant imports scipy where it uses it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

# The modules the scripts of jobs that never run the model import (scripts/*.py).
DATA_JOB_MODULES = [
    "aoideft.workflow.deft_jobs",  # routing, SDG, mining, assembly, the dataset gate, the loop's summary
    "aoideft.workflow.deft_eval_jobs",  # evaluation, RCA, the accept-or-keep decision
    "aoideft.workflow.automl_jobs",  # AutoML's suggest and select
    "aoideft.workflow.final_jobs",  # the delivered model's choice
    "aoideft.workflow.preflight",
    "aoideft.workflow.intake",
]


@pytest.mark.parametrize("module", DATA_JOB_MODULES)
def test_data_jobs_do_not_import_torch_or_scipy(module):
    probe = f"import sys, {module}; print('torch' in sys.modules, 'scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False", f"{module} imports torch or scipy: {result.stdout.strip()}"
