"""The consolidated pre-flight (contract section 6): one gate, nine sections, before any compute.

It runs twice: at parse time in Snakemake's main process (so `snakemake -n` validates config and
workspace and prints the summary), and as the `preflight` rule, whose `preflight/summary.md`
Phase 1 depends on.
"""

from __future__ import annotations

import csv
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean
from typing import Any

from .. import fsutil
from ..errors import InputError, refuse
from ..pair_content import PoolContent
from ..tao import preflight as tao_preflight
from . import automl_jobs, inputs
from .settings import RunSettings, tao_setup

CREDENTIALS = ("NGC_API_KEY", "HF_TOKEN", "WANDB_API_KEY")
# An unedited profile value such as "<PARTITION>" (profiles/slurm/config.yaml).
PROFILE_PLACEHOLDER = re.compile(r"^<[A-Z][A-Z_]*>$")
DEFAULT_SCOPE = "*"

# (benchmark glob under the run dir, label) of the jobs that dominate the cost.
COST_CLASSES = {
    "automl_trial": ("benchmarks/*_automl/rec*.tsv", "AutoML trial (train + validation)"),
    "deft_train": ("benchmarks/iter*/train.tsv", "DEFT retrain"),
    "inference": ("benchmarks/*/inference.tsv", "inference (2 checkpoints x KPI + validation)"),
    "embed": ("benchmarks/*/embed.tsv", "KPI and pool embeddings (failure modes, mining)"),
    "sdg": ("benchmarks/iter*/sdg.tsv", "SDG with verification"),
}


def _engine_lines(deft: dict) -> list[str]:
    if deft["engine"] == "tao":
        labels = deft["sdg"]["labels"]
        return [f"engine tao: per-label weak rows, label routing, SDG {deft['sdg']['num_sdg']} pairs/iteration "
                f"({deft['sdg']['method']}) for "
                f"{', '.join(labels) if labels is not None else 'every label the workspace has'} (unverified)"]
    verify = "verified by the current model" if deft["sdg"]["verify"] else "unverified"
    return [f"engine failure_modes: failure modes (metadata lift + embedding clusters), rows routed by an integer "
            f"program; SDG ({deft['sdg']['method']}) up to {deft['sdg']['num_sdg']} pairs/iteration, {verify}"]


def check_profile_resources(resources: dict[str, dict[str, Any]]) -> None:
    """Refuse a profile whose placeholders were never filled in.

    `resources` maps DEFAULT_SCOPE (default-resources) or a rule name (set-resources) to its
    values. Left alone, "<PARTITION>" would only fail at the first sbatch, after Phase 1 started.
    """
    for scope, values in resources.items():
        for key, value in values.items():
            if isinstance(value, str) and PROFILE_PLACEHOLDER.match(value.strip()):
                where = "default-resources" if scope == DEFAULT_SCOPE else f"set-resources, rule {scope}"
                raise InputError(
                    f"profile setting {key} ({where}) is still the placeholder {value}: set it in the "
                    "profile's config.yaml (profiles/slurm/config.yaml; `make install-profiles` links it), "
                    "or delete the line if your cluster does not need it.")


def _job_resource_line(settings: RunSettings, resources: dict[str, dict[str, Any]]) -> str:
    gpu = settings.config["resources"]["gpu"]
    placed = resources.get(DEFAULT_SCOPE, {})
    models = sorted({str(v["gpu_model"]) for v in resources.values() if v.get("gpu_model")})
    extras = [f"partition {placed['slurm_partition']}"] if placed.get("slurm_partition") else []
    extras += [f"account {placed['slurm_account']}"] if placed.get("slurm_account") else []
    extras += [f"GPU model {', '.join(models)}"] if models else []
    threads = f"{gpu['threads']} thread" + ("s" if gpu["threads"] != 1 else "")
    return (f"model jobs ask for {gpu['gpu']} GPU, {threads}, {gpu['mem_mb']} MB, "
            f"{gpu['runtime']} min each" + (f" ({', '.join(extras)})" if extras else "")
            + "; bookkeeping rules run where Snakemake runs")


def check_run_dir_placement(settings: RunSettings) -> None:
    """The run directory must not be, or lie inside, the workspace or an image root: those are the
    user's data, read-only to the workflow, and Snakemake writes ``.snakemake/`` into its working
    directory as soon as it starts (``-n`` included). The gate runs before ``workdir:``, so a refused
    run directory is never created or written."""
    run_dir = settings.run_dir.resolve()
    data_roots = {"workspace": settings.workspace, "datasets.images_dir": settings.images_dir,
                  "datasets.pool_images_dir": settings.pool_images_dir,
                  "datasets.synthetic_dir": settings.synthetic_dir}
    for key, folder in data_roots.items():
        folder = folder.resolve()
        if run_dir == folder or folder in run_dir.parents:
            where = "is" if run_dir == folder else "lies inside"
            raise InputError(f"run_dir {settings.run_dir} {where} the {key} {folder}: the workflow only reads "
                             "your data and writes everything (Snakemake's .snakemake/ included) under run_dir; "
                             "set `run_dir` in the config to a directory outside the workspace and image roots")


def check_run_dir(run_dir: Path) -> None:
    """The run directory exists, or can be made, and takes new files."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe.", dir=run_dir)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"run_dir {run_dir} is not writable ({error.strerror}): set `run_dir` in the config to a "
                         "directory you can write, or fix its permissions") from None


def check_inputs(settings: RunSettings, profile_resources: dict[str, dict[str, Any]] | None = None, *,
                 apptainer_enabled: bool | None = None) -> inputs.WorkspaceReport | None:
    """Everything the pre-flight refuses, one InputError naming the file, row or key: the profile,
    the AutoML search space (Phase 3 searches the same entries, minus what it pins), the workspace
    and, for backend tao, the TAO image and staged files. None when the demo workspace is still to
    be generated."""
    check_profile_resources(profile_resources or {})
    check_run_dir_placement(settings)
    check_run_dir(settings.run_dir)
    automl_jobs.search_space(settings, automl_jobs.PHASE1)
    report = None
    if settings.workspace.exists():
        report = inputs.check_workspace(settings)
    elif not settings.config["demo"]["generate"]:
        inputs.check_workspace(settings)  # raises the clear "does not exist" error
    tao_readiness(settings, report, apptainer_enabled).require()
    return report


def tao_readiness(settings: RunSettings, report: inputs.WorkspaceReport | None,
                  apptainer_enabled: bool | None = None) -> tao_preflight.Readiness:
    """The TAO backend's checks and summary lines (none for the embedded backend)."""
    if settings.config["backend"] != "tao":
        return tao_preflight.Readiness()
    batch_options = [max(entry.get("valid_options") or [0]) if "valid_options" in entry else entry.get("valid_max", 0)
                     for entry in settings.automl["search_space"]
                     if entry.get("parameter") == tao_preflight.BATCH_KEY]
    return tao_preflight.check(tao_setup(settings), spec=report.spec if report else None,
                               pinned=settings.automl["pinned"], batch_search_max=max(batch_options, default=None),
                               apptainer_enabled=apptainer_enabled)


# Snakemake commands that only show or check the workflow: no pre-flight (--lint and --dag work
# without a workspace), no summary on the terminal, no resume clean-up.
INSPECTION_FLAGS = frozenset({"--lint", "--dag", "--rulegraph", "--filegraph", "--d3dag", "--report", "--summary", "-S",
                              "--detailed-summary", "-D", "--list-changes", "--lc", "--list-rules", "--list", "-l",
                              "--list-target-rules", "--lt"})


def inspection_command(argv: list[str]) -> str | None:
    """The inspection flag on a Snakemake command line (``--lint``, ``--dag=...``), or None."""
    for arg in argv[1:]:
        flag = arg.split("=", 1)[0]
        if flag in INSPECTION_FLAGS:
            return flag
    return None


def parse_time_gate(settings: RunSettings, profile_resources: dict[str, dict[str, Any]] | None = None, *,
                    apptainer_enabled: bool | None = None) -> None:
    """Validate at parse time and print the summary; exit with one clear line on bad input."""
    try:
        report = check_inputs(settings, profile_resources, apptainer_enabled=apptainer_enabled)
        sys.stderr.write(render_summary(settings, report, profile_resources) + "\n")
    except InputError as error:
        refuse(error)
    except PermissionError as error:  # a path the checks look at sits in a folder this user cannot enter
        refuse(InputError(f"{error.filename}: permission denied for this user ({error.strerror}); make it and its "
                          "folders readable (chmod a+r on files, a+rx on folders, or ask their owner)"))


def job_time_checks(settings: RunSettings) -> tuple[inputs.WorkspaceReport, tao_preflight.Readiness]:
    """The checks of the workspace as workspace_ready recorded it, and the TAO backend's readiness;
    raises InputError on a bad input. The parse-time gate could not run them while the demo
    workspace did not exist yet."""
    # workspace_ready has just read every image file; reading them again here would only repeat it.
    # Spec, CSVs, labels and path leakage are cheap and re-checked; what the image files told
    # (content leakage, the pool's exclusions, notes) comes from its record.
    report = inputs.check_workspace(settings, check_files=False)
    record = fsutil.read_json(settings.run_dir / "inputs" / "workspace.json")
    report.pool, report.notes = PoolContent.from_json(record["pool"]), record["notes"]
    tao = tao_readiness(settings, report)
    tao.require()
    return report, tao


def write_preflight(settings: RunSettings, summary_path: Path, checks_path: Path) -> None:
    report, tao = job_time_checks(settings)
    pool = report.pool
    assert pool is not None  # job_time_checks sets it from the record
    fsutil.write_text(summary_path, render_summary(settings, report) + "\n")
    fsutil.write_json(
        checks_path,
        {
            "passed": True,
            "datasets": report.dataset_table(),
            "leakage": {f"{a}/{b}": 0 for a, b in inputs.LEAKAGE_PAIRS},
            "pool_overlaps": pool.overlaps,
            "pool_repeats": pool.repeats,
            "pool_excluded_rows": len(pool.excluded),
            "notes": report.notes,
            "spec_notes": report.spec_notes,
            "credentials": credential_status(),
            "tao": tao.lines,
            "estimate": compute_estimate(settings),
        },
    )


def mark_passed(settings: RunSettings, out_path: Path) -> None:
    """Rule preflight_passed: the pre-flight's checks again, and the mark the AutoML phases wait for
    on the first run."""
    job_time_checks(settings)
    fsutil.write_json(out_path, {"passed": True})


def credential_status() -> dict[str, str]:
    """SET/UNSET only: a credential's value never reaches a log, file or report."""
    return {name: ("SET" if os.environ.get(name) else "UNSET") for name in CREDENTIALS}


def _device_line() -> str:
    """The compute where Snakemake runs, from nvidia-smi and torch's package metadata: importing torch
    here would add 1.5-2 s to every `snakemake -n` (benchmarks/README.md, orchestration)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "torch not installed"
    smi = shutil.which("nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout if smi else ""
    names = [line.split(": ", 1)[1].split(" (UUID")[0] for line in listed.splitlines() if line.startswith("GPU ")]
    if names:
        return f"CUDA, {len(names)} GPU(s): {', '.join(sorted(set(names)))} (torch {version})"
    return f"CPU only (torch {version}, {os.cpu_count()} cores)"


def _budget_text(budget: dict) -> str:
    if budget["max_new_rows"] is not None:
        return f"at most {budget['max_new_rows']}"
    return f"at most {budget['new_rows_fraction']:.0%} of the base training set's rows as"


def _selection_lines(deft: dict) -> list[str]:
    if deft["kpi_holdout"] == 0:
        return ["KPI holdout OFF (deft.kpi_holdout 0, TAO's behaviour): checkpoints and the delivered model are "
                "chosen by FAR on the KPI set, every iteration is accepted; the KPI figures are optimistic"]
    group = f"by {deft['kpi_holdout_group']}" if deft["kpi_holdout_group"] else "by row"
    return [f"KPI holdout ON: {deft['kpi_holdout']:.0%} of the KPI rows ({group}) are held out, read by nothing "
            "in the loop; RCA, routing and mining see the rest (deft.kpi_holdout: 0 restores TAO's behaviour)",
            f"checkpoints and AutoML trials chosen on validation (expected FAR@100% recall under the bootstrap); "
            f"an iteration replaces the incumbent only when better in {deft['gate']['confidence']:.0%} of "
            f"{deft['gate']['resamples']} paired bootstrap resamples " + (
                "of the KPI targeting half and not worse in as many of validation's (deft.gate.basis targeting)"
                if deft["gate"]["basis"] == "targeting" else "of validation (deft.gate.basis validation)")]


def compute_estimate(settings: RunSettings) -> dict[str, Any]:
    """Jobs x measured per-job seconds, from this run dir's Snakemake benchmark files."""
    cfg = settings.config
    max_iter = cfg["deft"]["max_iterations"]
    counts = {
        "automl_trial": cfg["automl"]["phase1"]["max_recommendations"]
        + cfg["automl"]["phase3"]["max_recommendations"],
        "deft_train": max_iter,
        "inference": max_iter + 2,  # baseline + iterations + final_automl
        "embed": max_iter + 1,  # baseline + iterations (each loop model once)
        "sdg": max_iter,
    }
    rows, total, measured_all = [], 0.0, True
    for key, (pattern, label) in COST_CLASSES.items():
        seconds = _benchmark_seconds(settings.run_dir, pattern)
        if seconds is None:
            measured_all = False
        else:
            total += seconds * counts[key]
        rows.append({"job": label, "count": counts[key], "seconds_each": seconds})
    return {"rows": rows, "total_seconds": total if measured_all else None}


def _benchmark_seconds(run_dir: Path, pattern: str) -> float | None:
    values = []
    for path in sorted(run_dir.glob(pattern)):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                try:
                    values.append(float(row["s"]))
                except (KeyError, ValueError):
                    continue
    return mean(values) if values else None


def render_summary(settings: RunSettings, report: inputs.WorkspaceReport | None,
                   profile_resources: dict[str, dict[str, Any]] | None = None) -> str:
    cfg = settings.config
    automl, deft = cfg["automl"], cfg["deft"]
    lines = ["", "=" * 78, "AOI pipeline pre-flight (Phase 1 AutoML -> DEFT loop -> Phase 3 AutoML)",
             "=" * 78]

    def section(title: str, body: list[str]) -> None:
        lines.append(f"\n## {title}")
        lines.extend(f"  {line}" for line in body)

    section("1. Workspace, host, platform, network", [
        f"workspace: {settings.workspace}" + ("" if report else "  (absent: the demo will be generated)"),
        f"run dir:   {settings.run_dir}",
        f"host:      {socket.gethostname()} ({platform.platform()}, Python {platform.python_version()})",
        f"compute:   {_device_line()}",
        f"jobs:      {_job_resource_line(settings, profile_resources or {})}",
        "network:   not used (models train from scratch; nothing is downloaded)",
    ])
    section("2. Credentials", [f"{k}: {v}" for k, v in credential_status().items()])
    if cfg["backend"] == "tao":
        section("3. Container images", tao_readiness(settings, report).lines)
    else:
        section("3. Container images", [
            f"backend: {cfg['backend']} (ChangeNet-lite in this Python environment): no images needed",
        ])
    if report is None:
        section("4. Datasets", ["checked once the demo workspace exists (rule workspace_ready)"])
    else:
        body = [f"{'dataset':<11}{'rows':>7}{'PASS':>7}{'defect':>8}  labels"]
        for row in report.dataset_table():
            labels = ", ".join(f"{k} {v}" for k, v in row["labels"].items())
            body.append(f"{row['dataset']:<11}{row['rows']:>7}{row['pass']:>7}{row['defect']:>8}  {labels}")
        body.append("leakage: " + ", ".join(f"{a}/{b} 0 overlapping rows" for a, b in inputs.LEAKAGE_PAIRS)
                    + " (by path and by image content)")
        body.append("pool rows repeating train/validation/KPI rows, by path or content (excluded from mining): "
                    + ", ".join(f"{k} {v}" for k, v in report.pool.overlaps.items())
                    + f"; repeating an earlier pool row: {report.pool.repeats}")
        body.append(f"lights: {', '.join(report.lights)}; image ext {report.image_ext}")
        body.extend(f"note: {note}" for note in report.notes)
        if cfg["backend"] == "tao":
            body.append("spec: given to TAO as it is; each job sets only results_dir, its CSVs, its checkpoint, "
                        "one GPU and tao.pretrained_backbone")
        else:
            body.extend(f"spec note: {note}" for note in report.spec_notes)
        section("4. Datasets", body)
    p1, p3 = automl["phase1"], automl["phase3"]
    space = ", ".join(e["parameter"] for e in automl["search_space"]) or "TAO's default AutoML parameters"
    pinned = ", ".join(f"{k}={v}" for k, v in automl["pinned"].items()) or "none"
    section("5. Phase 1: AutoML baseline", [
        f"algorithm {automl['algorithm']}, metric {automl['metric']} (minimise) on the validation CSV "
        "(never the KPI set)",
        f"{p1['max_recommendations']} recommendations, {p1['max_concurrent']} at a time, seed {automl['seed']}",
        f"search space: {space}", f"pinned: {pinned}",
    ])
    section("6. Phase 2: DEFT loop", [
        "baseline pre-seeded from phase1_automl/best_rec.json (no baseline retrain)",
        f"KPI: FAR at 100% recall <= {cfg['kpi']['target_far_pct']}% on {settings.kpi_csv.name}",
        f"max iterations {deft['max_iterations']}, retrain epochs {deft['retrain_epochs'] or 'from spec'}, "
        f"RCA top {deft['top_k_per_label']} per label",
        *_engine_lines(deft),
        f"mining top {deft['mining']['top_k_per_target']} per target, cosine >= {deft['mining']['min_similarity']}; "
        f"{_budget_text(deft['budget'])} new rows per iteration, synthetic share <= "
        f"{deft['budget']['max_synthetic_share']:.0%}",
        *_selection_lines(deft),
        "hard stops: leakage, missing files, an iteration that adds no rows, an unreachable KPI",
    ])
    section("7. Phase 3: AutoML refinement", [
        f"{p3['max_recommendations']} recommendations on the final DEFT training CSV, same validation set, "
        f"metric and algorithm; first trial = Phase 1's winner",
        "every trial warm-starts from the DEFT loop's delivered model (its incumbent; with kpi_holdout 0 the "
        "lowest-FAR iteration); learnable_difference_modules pinned",
        "skipped if the DEFT loop hard-stops",
    ])
    estimate = compute_estimate(settings)
    body = [f"{r['count']:>3} x {r['job']}: "
            + (f"{r['seconds_each']:.0f}s each (measured)" if r["seconds_each"] is not None else "not measured yet")
            for r in estimate["rows"]]
    body.append("total: " + (f"about {estimate['total_seconds'] / 60:.1f} min of job time"
                             if estimate["total_seconds"] is not None else
                             "known after the first jobs of this run dir have run (Snakemake benchmark files)"))
    body.append("`snakemake -n` lists the jobs up to the next undecided DEFT iteration; later ones show as "
                "<TBD>: Snakemake decides the loop's length from each iteration's decision file.")
    section("8. Compute estimate", body)
    section("9. Confirmation", [
        "Pre-flight passed. Running the target proceeds through all three phases without further "
        "questions; only the hard-stop gates above can end it early.",
    ])
    return "\n".join(lines)
