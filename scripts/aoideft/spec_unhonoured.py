"""TAO keys the embedded ChangeNet-lite model cannot honour: the one table (``UNHONOURED_KEYS``) of how
each is handled. ``spec.validate_spec`` turns its rows into notes; the rows marked ``no_effect`` are
the keys AutoML must not sweep (``spec.EMBEDDED_IGNORED_KEYS``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def is_set(value: Any) -> bool:
    """A value that asks for something: not null, not '', not an empty list/map."""
    return value not in (None, "", [], {})


def _is_true(value: Any) -> bool:
    return value is True


def _equals(expected: str) -> Callable[[Any], bool]:
    return lambda value: value == expected


def _section_enabled(flag: str, default: bool) -> Callable[[Any], bool]:
    """For a section row: the section's on/off flag (``enable``/``enabled``) is on."""
    return lambda section: isinstance(section, dict) and section.get(flag, default) is True


@dataclass(frozen=True)
class Unhonoured:
    """One row of ``UNHONOURED_KEYS``.

    keys:    dotted spec keys; a section key (``model.decode_head``) covers its whole subtree. The row
             fires for the first of them present in the spec whose value passes ``applies``.
    note:    what the user is told: the key and how it is handled (ignored, or mapped to what).
             ``{value!r}`` in it is replaced by that key's value.
    applies: value test; the default fires for any value that asks for something (not null/''/[]/{}).
    no_effect: True when no value of these keys changes the embedded model's training or scores
             (they form EMBEDDED_IGNORED_KEYS, which AutoML must not sweep); False for keys that are
             honoured except for the mapped value the note names.
    """

    keys: tuple[str, ...]
    note: str
    applies: Callable[[Any], bool] = is_set
    no_effect: bool = True


# Every valid TAO key whose setting the embedded ChangeNet-lite model (small CNN, trained from scratch
# with cross-entropy, one CPU/GPU process per job) cannot honour. validate_spec reports each fired row
# once, in this order; keys absent from this table are honoured by train_settings/TrainSettings (or
# are structural, like dataset.classify.*_dataset, which the workflow fills in).
UNHONOURED_KEYS: tuple[Unhonoured, ...] = (
    Unhonoured(("model.backbone.type",),
               "model.backbone.type {value!r} -> embedded ChangeNet-lite CNN (TAO backbones need the "
               "TAO backend)"),
    Unhonoured(("model.backbone.pretrained_backbone_path",),
               "model.backbone.pretrained_backbone_path: ignored (embedded model trains from scratch; "
               "nothing is downloaded)"),
    Unhonoured(("model.backbone.freeze_backbone", "model.backbone.feat_downsample"),
               "model.backbone.freeze_backbone/feat_downsample: ignored (options of TAO's pretrained "
               "backbones; the embedded backbone always trains)", _is_true),
    Unhonoured(("model.decode_head",),
               "model.decode_head.*: ignored (the embedded model has its own fixed 4-level top-down "
               "fusion)"),
    Unhonoured(("model.classify.difference_module",),
               "model.classify.difference_module 'euclidean' -> fixed |f_test - f_golden| difference "
               "(no learnable block)", _equals("euclidean"), no_effect=False),
    Unhonoured(("model.classify.embedding_vectors",),
               "model.classify.embedding_vectors: ignored (size of TAO's contrastive embedding; the "
               "embedded head outputs 2 logits)"),
    Unhonoured(("model.classify.train_margin_euclid",),
               "model.classify.train_margin_euclid: ignored (margin of TAO's contrastive loss; training "
               "uses cross-entropy)"),
    Unhonoured(("model.classify.eval_margin",),
               "model.classify.eval_margin: not used in training or scoring (the KPI threshold is "
               "swept over siamese_score)"),
    Unhonoured(("train.classify.loss",),
               "train.classify.loss 'contrastive' -> cross-entropy", _equals("contrastive")),
    Unhonoured(("train.optim.optim",), "train.optim.optim 'adam' -> adamw", _equals("adam"),
               no_effect=False),
    Unhonoured(("train.optim.monitor_name",),
               "train.optim.monitor_name {value!r}: ignored (the trainer monitors val_loss)",
               lambda value: value not in (None, "", "val_loss")),
    Unhonoured(("train.num_nodes", "train.num_gpus", "train.gpu_ids", "evaluate.num_nodes",
                "evaluate.num_gpus", "evaluate.gpu_ids", "inference.num_nodes", "inference.num_gpus",
                "inference.gpu_ids"),
               "train.num_nodes/num_gpus/gpu_ids: ignored (one process per job; the GPU comes from "
               "CUDA_VISIBLE_DEVICES)"),
    Unhonoured(("train.sync_batchnorm", "train.use_distributed_sampler"),
               "train.sync_batchnorm/use_distributed_sampler: ignored (one process per job)", _is_true),
    Unhonoured(("train.validation_interval",),
               "train.validation_interval {value!r}: validation runs every epoch (best_val.pth and the "
               "collapse check need the whole curve)", lambda value: value != 1),
    Unhonoured(("dataset.classify.workers",),
               "dataset.classify.workers: ignored (images are decoded once per job, by as many processes as it has threads)"),
    Unhonoured(("train.precision",),
               "train.precision {value!r}: ignored (the embedded model trains in float32)",
               lambda value: value not in (None, "", 32, "32", "32-true")),
    Unhonoured(("train.cudnn",),
               "train.cudnn.*: ignored (determinism comes from train.seed)"),
    Unhonoured(("train.tensorboard",),
               "train.tensorboard: ignored (training metrics go to the job's own log)",
               _section_enabled("enabled", default=False)),
    Unhonoured(("train.checkpointer",),
               "train.checkpointer.*: ignored (checkpoints follow train.checkpoint_interval)"),
    Unhonoured(("train.checkpoint_interval_unit",),
               "train.checkpoint_interval_unit 'step' -> 'epoch' (checkpoints are written per epoch)",
               _equals("step")),
    Unhonoured(("train.resume_training_checkpoint_path",),
               "train.resume_training_checkpoint_path: ignored (every job trains afresh; use "
               "train.pretrained_model_path to start from a checkpoint)"),
    Unhonoured(("results_dir", "train.results_dir", "evaluate.results_dir", "inference.results_dir"),
               "results_dir/train.results_dir: ignored (the workflow chooses every output directory)"),
    Unhonoured(("evaluate.checkpoint", "inference.checkpoint"),
               "evaluate/inference.checkpoint: ignored (the workflow passes checkpoints explicitly)"),
    Unhonoured(("evaluate.trt_engine", "inference.trt_engine"),
               "evaluate/inference.trt_engine: ignored (no TensorRT; the PyTorch checkpoint is used)"),
    Unhonoured(("evaluate.vis_after_n_batches", "inference.vis_after_n_batches"),
               "evaluate/inference.vis_after_n_batches: ignored (no visualisation dumps)"),
    Unhonoured(("dataset.classify.test_dataset",),
               "dataset.classify.test_dataset: not read (the workflow scores the KPI CSV through "
               "inference)", lambda section: isinstance(section, dict) and is_set(section.get("csv_path"))),
    Unhonoured(("dataset.classify.quant_calibration_dataset",),
               "dataset.classify.quant_calibration_dataset: ignored (no quantisation)",
               lambda section: isinstance(section, dict) and is_set(section.get("images_dir"))),
    Unhonoured(("dataset.classify.augmentation_config.with_random_blur",
                "dataset.classify.augmentation_config.with_random_crop"),
               "augmentation_config.with_random_blur/with_random_crop: ignored (the embedded "
               "augmentation has flip, rotate, colour jitter and with_scale_random_crop)", _is_true),
    Unhonoured(("train.segment", "dataset.segment"),
               "train.segment/dataset.segment: ignored (segmentation settings; the task is classify)"),
    Unhonoured(("encryption_key",),
               "encryption_key: ignored (checkpoints are plain PyTorch files)"),
    Unhonoured(("model_name",), "model_name: ignored (the model is always the embedded ChangeNet-lite)"),
    Unhonoured(("wandb",), "wandb: ignored (no network; metrics go to the job's own log)",
               _section_enabled("enable", default=True)),
    Unhonoured(("quantize",), "quantize: ignored (TAO quantize action settings; not used)"),
    Unhonoured(("export",),
               "export: accepted as TAO's export action section; not used (the embedded model is not "
               "exported to ONNX/TensorRT)", lambda section: section is not None),
    Unhonoured(("gen_trt_engine",),
               "gen_trt_engine: accepted as TAO's gen_trt_engine action section; not used (no "
               "TensorRT)", lambda section: section is not None),
)
