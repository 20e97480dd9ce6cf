"""The one interface the workflow uses to train, score and embed, whatever runs the model.

``EmbeddedBackend`` runs the bundled ChangeNet-lite (trainer.py / inference.py) in-process.
``TaoBackend`` runs NVIDIA's Visual ChangeNet in the TAO PyTorch image (``aoideft.tao``) and writes
the same files, so no rule knows which backend ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from aoideft import csvdata, fsutil, inference, kpi, spec as tao_spec, spec_settings, trainer
from aoideft.errors import InputError
from aoideft.tao import outputs as tao_outputs, runtime as tao_runtime, specs as tao_specs

BACKENDS = ("embedded", "tao")


class TrainerBackend(Protocol):
    name: str

    def train(
        self,
        spec: dict,
        results_dir: Path,
        *,
        spec_base_dir: Path | None = None,
        pretrained: Path | None = None,
        options: dict | None = None,
    ) -> dict:
        """Train from a TAO spec into ``results_dir``; returns the train_summary dict."""
        ...

    def infer(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_csv: Path) -> Path:
        """Write ``out_csv`` = the input CSV + ``siamese_score``; returns its path."""
        ...

    def embed(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_npy: Path,
              scores_csv: Path | None = None) -> Path:
        """Write float32 [N, D] embeddings + ``csvdata.embedding_keys_path(out_npy)`` (and, with
        ``scores_csv``, the rows' ``siamese_score`` by this checkpoint); returns ``out_npy``."""
        ...


@dataclass(frozen=True)
class EmbeddedBackend:
    """ChangeNet-lite in this process; ``options`` are ``trainer.TrainOptions`` fields (device, threads,
    base_width, light_stacking, compile, ema_epochs, warm_start_warmup_epochs, decode_cache, align,
    align_max_shift_px, shift_tolerance_px, verbose); inference uses ``device`` and ``decode_cache``
    (registration settings travel in the checkpoint)."""

    options: dict[str, Any] = field(default_factory=dict)
    name: str = "embedded"

    def __post_init__(self) -> None:
        trainer.TrainOptions.from_dict(self.options)  # unknown options fail here, before any job runs

    def train(
        self,
        spec: dict,
        results_dir: Path,
        *,
        spec_base_dir: Path | None = None,
        pretrained: Path | None = None,
        options: dict | None = None,
    ) -> dict:
        return trainer.train_from_spec(
            spec,
            results_dir,
            spec_base_dir=spec_base_dir,
            pretrained=pretrained,
            options={**self.options, **(options or {})},
        )

    def infer(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_csv: Path) -> Path:
        inference.run_inference(checkpoint, csv_path, images_dir, out_csv, device=self.options.get("device"),
                                decode_cache=self.options.get("decode_cache"))
        return Path(out_csv)

    def embed(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_npy: Path,
              scores_csv: Path | None = None) -> Path:
        inference.export_embeddings(checkpoint, csv_path, images_dir, out_npy, device=self.options.get("device"),
                                    decode_cache=self.options.get("decode_cache"), scores_csv=scores_csv)
        return Path(out_npy)


@dataclass(frozen=True)
class TaoBackend:
    """Visual ChangeNet through TAO's ``visual_changenet train|inference`` (``aoideft.tao.runtime``).

    ``architecture_spec``: the spec every checkpoint scored after Phase 1 was trained with (the run's
    ``specs/baseline_spec_automl.yaml``: Phase 3 pins the architecture, DEFT retrains use it), needed
    because a TAO inference job rebuilds the model from a spec. ``device``: where ``embed`` runs.
    ``runner(command, cwd) -> exit code`` starts the command (tests pass a fake).

    ``embed`` does not use the TAO checkpoint: TAO's classify model exports no embeddings (TAO's own
    loop mines with a separate image encoder, SigLIP). Mining, failure-mode clustering and SDG
    near-duplicate checks use our ChangeNet-lite encoder (``tao.embedding_checkpoint``, one fixed
    model per run) on the same images, so the vectors of every iteration are comparable.
    """

    setup: tao_runtime.TaoSetup
    architecture_spec: Path
    device: str | None = None
    decode_cache: str | None = None  # the run's decode cache, for embed (decode_cache.py)
    runner: Callable[[Sequence[str], Path], int] = tao_runtime.run_command
    name: str = "tao"

    def train(
        self,
        spec: dict,
        results_dir: Path,
        *,
        spec_base_dir: Path | None = None,
        pretrained: Path | None = None,
        options: dict | None = None,
    ) -> dict:
        """TAO trains into ``results_dir``; then every epoch checkpoint scores the validation CSV, so
        ``best_val`` is the lowest validation selection score, as with the embedded trainer."""
        started = time.perf_counter()
        results_dir = Path(results_dir).resolve()
        results_dir.mkdir(parents=True, exist_ok=True)
        job = tao_specs.train_spec(spec, results_dir, backbone=self.setup.pretrained_backbone,
                                   pretrained=pretrained, base_dir=spec_base_dir)
        self._run("train", job, results_dir)
        checkpoints = tao_outputs.find_checkpoints(results_dir)
        if not checkpoints:
            raise tao_outputs.TaoRunError(
                f"TAO train wrote no model_epoch_<EEE>_step_<SSS>.pth into {results_dir}; see this job's log "
                f"and {results_dir / tao_outputs.STATUS_FILE}")
        status = tao_outputs.read_status(results_dir / tao_outputs.STATUS_FILE)
        history = tao_outputs.epoch_history(status)
        val_csv = Path(tao_spec.get_dotted(job, "dataset.classify.validation_dataset.csv_path"))
        val_images = Path(tao_spec.get_dotted(job, "dataset.classify.validation_dataset.images_dir"))
        scores = [self._validation_score(job, ckpt, val_csv, val_images, results_dir / "validation")
                  for ckpt in checkpoints]
        by_epoch = {row["epoch"]: row for row in history}
        for ckpt, score in zip(checkpoints, scores):
            by_epoch.setdefault(ckpt.epoch, {"epoch": ckpt.epoch}).update({"step": ckpt.step, **score})
        history = [by_epoch[epoch] for epoch in sorted(by_epoch)]
        trainer.write_metrics(results_dir, history)
        # The lower validation selection score wins; ties go to the earlier checkpoint (the embedded rule
        # breaks ties by val_loss, which TAO logs only at its validation_interval).
        best_index = min(range(len(checkpoints)), key=lambda i: (*kpi.validation_order({**scores[i], "val_loss": None}), i))
        best, latest = checkpoints[best_index], checkpoints[-1]
        best_score = scores[best_index]
        summary = {
            "backend": "tao",
            "image": self.setup.image,
            "best_epoch": best.epoch,
            "best_val_far_pct": best_score["val_far_pct"],
            **{f"best_{key}": best_score[key] for key in ("val_selection", "val_expected_far_pct", "val_margin")},
            "best_val_loss": by_epoch[best.epoch].get("val_loss"),
            "best_val_threshold": best_score["val_threshold"],
            "final": history[-1],
            "epochs_run": max(tao_outputs.epochs_counted(status), latest.epoch + 1),
            "checkpoints": {"best_val": best.path.name, "latest": latest.path.name,
                            "epochs": [c.path.name for c in checkpoints]},
            "collapsed": min(best_score["val_pred_counts"].values()) == 0,
            "device": f"TAO ({self.setup.runtime})",
            "seed": tao_spec.get_dotted(job, "train.seed"),
            "pretrained": str(pretrained or tao_spec.get_dotted(job, "train.pretrained_model_path") or "") or None,
            "num_train_pairs": _rows(tao_spec.get_dotted(job, "dataset.classify.train_dataset.csv_path")),
            "num_val_pairs": _rows(val_csv),
            "seconds": time.perf_counter() - started,
            "spec_notes": [],
        }
        fsutil.write_json(results_dir / "train_summary.json", summary)
        return summary

    def infer(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_csv: Path) -> Path:
        spec = self._architecture()
        self._score(spec, Path(checkpoint), Path(csv_path), Path(images_dir), Path(out_csv))
        return Path(out_csv)

    def embed(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_npy: Path,
              scores_csv: Path | None = None) -> Path:
        if self.setup.embedding_checkpoint is None:
            raise InputError("config tao.embedding_checkpoint is not set: the TAO backend embeds with a "
                             "ChangeNet-lite checkpoint (README: the TAO backend)")
        inference.export_embeddings(self.setup.embedding_checkpoint, csv_path, images_dir, out_npy,
                                    device=self.device, decode_cache=self.decode_cache)
        if scores_csv is not None:  # the scores are the TAO model's own: a TAO inference job
            self.infer(checkpoint, csv_path, images_dir, scores_csv)
        return Path(out_npy)

    # ---- internals --------------------------------------------------------------------------------
    def _architecture(self) -> dict:
        if not self.architecture_spec.is_file():
            raise InputError(f"{self.architecture_spec} does not exist: TAO inference rebuilds the model from "
                             "the run's merged spec, written by the Phase 1 -> 2 handoff (rule preseed_deft)")
        return tao_spec.load_spec(self.architecture_spec)

    def _score(self, spec: dict, checkpoint: Path, csv_path: Path, images_dir: Path, out_csv: Path) -> pd.DataFrame:
        """TAO inference of ``checkpoint`` on ``csv_path``; ``out_csv`` = the CSV + siamese_score."""
        settings = spec_settings.train_settings(spec)
        rows = csvdata.read_pairs_csv(csv_path, images_dir=images_dir, lights=settings.lights,
                                      image_ext=settings.image_ext, check_files=False, source=str(csv_path))
        work = out_csv.parent.resolve() / f"tao_{out_csv.stem}"
        work.mkdir(parents=True, exist_ok=True)
        job = tao_specs.inference_spec(spec, work, checkpoint=checkpoint.resolve(), csv_path=csv_path.resolve(),
                                       images_dir=images_dir.absolute(), backbone=self.setup.pretrained_backbone)
        self._run("inference", job, work)
        return tao_outputs.attach_scores(rows, work / "inference.csv", out_csv)

    def _validation_score(self, job: dict, ckpt: tao_outputs.TaoCheckpoint, val_csv: Path, val_images: Path,
                          out_dir: Path) -> dict[str, Any]:
        scored = self._score(job, ckpt.path, val_csv, val_images, out_dir / f"{ckpt.path.stem}.csv")
        scores = kpi.parse_scores(scored[inference.SCORE_COLUMN], source=str(val_csv))
        flagged = int((scores > 0.5).sum())
        return {**kpi.validation_metrics(kpi.defect_mask(scored["label"], source=str(val_csv)), scores),
                "val_pred_counts": {"PASS": len(scored) - flagged, "NO_PASS": flagged}}

    def _run(self, action: str, job: dict, workdir: Path) -> None:
        spec_file = workdir / f"tao_{action}_spec.yaml"
        fsutil.write_yaml(spec_file, job)
        command = tao_runtime.launch_command(self.setup, action, spec_file, workdir)
        code = self.runner(command, workdir)
        status, message = tao_outputs.final_status(tao_outputs.read_status(workdir / tao_outputs.STATUS_FILE))
        if code != 0 or status == "FAILURE":
            raise tao_outputs.TaoRunError(
                f"TAO {action} failed (exit code {code}, status {status or 'none'}: {message or 'no message'}); "
                f"spec {spec_file}, TAO's log {workdir / tao_outputs.STATUS_FILE} and this job's log")


def _rows(csv_path: Any) -> int | None:
    return len(pd.read_csv(csv_path, dtype=str)) if csv_path and Path(csv_path).is_file() else None


def get_backend(name: str = "embedded", **options: Any) -> TrainerBackend:
    """The backend called ``name``; ``options`` configure it (see EmbeddedBackend, TaoBackend)."""
    if name == "embedded":
        return EmbeddedBackend(dict(options))
    if name == "tao":
        try:
            return TaoBackend(**options)
        except TypeError as error:
            raise InputError(f"trainer backend 'tao' needs setup= and architecture_spec= ({error}); the "
                             "workflow builds them from the config's tao: section") from None
    raise InputError(f"unknown trainer backend {name!r}; choose one of {list(BACKENDS)}.")
