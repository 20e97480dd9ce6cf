"""What finished runs say about choosing and combining the DEFT loop's models (issue "DEFT gains that hold").

    .venv/bin/python benchmarks/loop_models.py RUN_DIR [RUN_DIR ...] --json benchmarks/results/loop_models_cpu_2cores.json

For every run (a finished workflow run directory with the KPI holdout on), over its loop models
(baseline, iter1..N, each at its chosen checkpoint) and Phase 3's winner:

1. Selection metrics. Which validation figure ranks the models the way the held-out KPI half does:
   FAR@100% recall, the selection score (its bootstrap expectation, ``kpi.selection_score``), AUROC.
   Reported per run: Spearman's rank correlation with held-out FAR@100% and FAR@99.9% recall, and the
   regret of choosing by it (held-out FAR of the model it picks minus the best model's).
2. Delivering the loop's models as one model: the incumbent (what the workflow delivers), the last
   iteration, a uniform weight soup of the loop models (BatchNorm statistics recomputed on the final
   training CSV) and a score ensemble (the mean of their scores), each on validation and on the
   held-out half.

Every figure is re-computed from the run's own inference CSVs and checkpoints; nothing is retrained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import median

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from aoideft import holdout, kpi  # noqa: E402
from aoideft.checkpoint import build_model_from_checkpoint  # noqa: E402
from aoideft.epoch import PairTensors, recalibrate_batchnorm  # noqa: E402
from aoideft.inference import decode_for_arch, predict  # noqa: E402
from aoideft.model import defect_scores  # noqa: E402


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _scores(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return kpi.defect_mask(frame["label"]), kpi.parse_scores(frame[kpi.SCORE_COLUMN])


def _figures(validation: pd.DataFrame, held: pd.DataFrame) -> dict[str, float]:
    dv, sv = _scores(validation)
    dh, sh = _scores(held)
    selection = kpi.selection_score(dv, sv)
    return {"val_far_pct": kpi.operating_point_at_recall(dv, sv).far_pct,
            "val_expected_far_pct": selection.expected_far_pct, "val_margin": selection.margin,
            "val_auroc": kpi.auroc(dv, sv),
            "held_out_far_pct": kpi.operating_point_at_recall(dh, sh).far_pct,
            "held_out_far_99_9": kpi.operating_point_at_recall(dh, sh, 0.999).far_pct}


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def _soup_scores(checkpoints: list[Path], csvs: dict[str, tuple[Path, Path]], train_csv: Path,
                 train_images: Path) -> dict[str, np.ndarray]:
    """A uniform weight soup of ``checkpoints`` (BatchNorm recomputed on the final training CSV), scored."""
    models = [build_model_from_checkpoint(p) for p in checkpoints]
    soup = models[0]
    states = [m.state_dict() for m in models]
    averaged = {name: (torch.stack([s[name].float() for s in states]).mean(0).to(tensor.dtype)
                       if tensor.is_floating_point() else tensor) for name, tensor in states[0].items()}
    soup.load_state_dict(averaged)
    device = torch.device("cpu")
    _, decoded = decode_for_arch(soup.arch, train_csv, train_images)
    recalibrate_batchnorm(soup, PairTensors(decoded.golden, decoded.test, decoded.labels), batch_size=32,
                          device=device)
    out = {}
    for name, (csv, images) in csvs.items():
        _, pairs = decode_for_arch(soup.arch, csv, images)
        logits = predict(soup, pairs.golden, pairs.test, batch_size=128, device=device)
        out[name] = defect_scores(logits).numpy()
    return out


def analyse_run(run: Path, soup: bool) -> dict:
    config = _json(run / "inputs" / "workspace.json") if (run / "inputs" / "workspace.json").is_file() else {}
    summary = _json(run / "deft" / "summary.json")
    labels = list(summary["iterations"]) + (["final_automl"] if (run / "final_automl/evaluate/best.json").is_file() else [])
    bests = {label: _json(run / label / "evaluate" / "best.json") for label in labels}
    kpi_frame = pd.read_csv(run / bests["baseline"]["inference_csv"], dtype=str, keep_default_na=False)
    fraction = _json(run / "deft_state.json")["config"].get("kpi_holdout", 0.5)
    held = holdout.held_out_mask(kpi_frame, fraction)
    frames = {label: (pd.read_csv(run / b["validation_inference_csv"], dtype=str, keep_default_na=False),
                      pd.read_csv(run / b["inference_csv"], dtype=str, keep_default_na=False)[held])
              for label, b in bests.items()}
    figures = {label: _figures(v, k) for label, (v, k) in frames.items()}
    loop = [label for label in labels if label != "final_automl"]

    metrics = {}
    for name in ("val_far_pct", "val_expected_far_pct", "val_auroc"):
        sign = -1 if name == "val_auroc" else 1
        ranked = [sign * figures[label][name] for label in labels]
        target = [figures[label]["held_out_far_pct"] for label in labels]
        chosen = min(range(len(labels)), key=lambda i: (ranked[i], i))
        metrics[name] = {"spearman_held_out_far": _spearman(ranked, target),
                         "spearman_held_out_far_99_9": _spearman(ranked, [figures[label]["held_out_far_99_9"]
                                                                          for label in labels]),
                         "picks": labels[chosen], "regret_pp": target[chosen] - min(target)}

    combined = {"incumbent": {"model": summary["best"]["iteration"], **figures[summary["best"]["iteration"]]},
                "last_iteration": {"model": loop[-1], **figures[loop[-1]]}}
    validation, held_kpi = frames["baseline"]
    ensemble_val = np.mean([_scores(frames[label][0])[1] for label in loop], axis=0)
    ensemble_kpi = np.mean([_scores(frames[label][1])[1] for label in loop], axis=0)
    combined["ensemble"] = {"model": f"mean score of {', '.join(loop)}",
                            **_figures(validation.assign(siamese_score=ensemble_val),
                                       held_kpi.assign(siamese_score=ensemble_kpi))}
    if soup and len(loop) > 1:
        state = _json(run / "deft_state.json")["config"]
        final_csv = run / summary["final_training_csv"]
        scored = _soup_scores([run / bests[label]["best_ckpt_path"] for label in loop],
                              {"validation": (Path(state["validation_csv"]), Path(state["images_dir"])),
                               "kpi": (Path(state["kpi_test_csv"]), Path(state["images_dir"]))},
                              final_csv, run / summary["final_training_images_dir"])
        combined["soup"] = {"model": f"uniform weight soup of {', '.join(loop)}",
                            **_figures(validation.assign(siamese_score=scored["validation"]),
                                       held_kpi.assign(siamese_score=scored["kpi"][held]))}
    if "final_automl" in figures:
        combined["phase3"] = {"model": "final_automl", **figures["final_automl"]}
    delivered = _json(run / "best_model.json")["iteration"] if (run / "best_model.json").is_file() else None
    return {"run": str(run), "workspace": config.get("workspace"), "models": figures, "selection": metrics,
            "combined": combined, "delivered": delivered}


def run_label(result: dict) -> str:
    """<parent>/<run>: ablation runs are all called pipeline, their parent names the world and seed."""
    run = Path(result["run"])
    return f"{run.parent.name}/{run.name}"


def print_table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--no-soup", action="store_true", help="skip the weight soup (it decodes the training CSV)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = [analyse_run(run.resolve(), soup=not args.no_soup) for run in args.runs]
    print_table(["run", "metric", "Spearman vs held-out FAR@100%", "vs @99.9%", "picks", "regret (pp)"],
                [[run_label(r), name, m["spearman_held_out_far"], m["spearman_held_out_far_99_9"], m["picks"],
                  f"{m['regret_pp']:.2f}"] for r in results for name, m in r["selection"].items()])
    print()
    print_table(["run", "model", "val expected FAR", "held-out FAR@100%", "@99.9%"],
                [[run_label(r), f"{name} ({c['model']})", f"{c['val_expected_far_pct']:.2f}",
                  f"{c['held_out_far_pct']:.2f}", f"{c['held_out_far_99_9']:.2f}"]
                 for r in results for name, c in r["combined"].items()])
    for name in ("incumbent", "ensemble", "soup", "phase3"):
        values = [r["combined"][name]["held_out_far_pct"] for r in results if name in r["combined"]]
        if values:
            print(f"median held-out FAR@100% of {name}: {median(values):.2f} (range {min(values):.2f}-{max(values):.2f}, "
                  f"{len(values)} runs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
