"""The spec TAO gets for one job, and TAO's documented GPU-memory rule for the batch size.

A job spec is the workflow's spec (workspace spec + AutoML/DEFT overrides) with only what the job
decides set on top: ``results_dir`` (top level and the action's own, since TAO writes some files to
each), the dataset CSVs, the checkpoint, one GPU, and the staged backbone file. Everything else goes
to TAO unchanged. Every job spec is checked against TAO's schema of its action before it is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import spec as tao_spec
from ..errors import InputError

DATASET_SPLITS = ("train", "validation", "test", "infer")
BACKBONE_KEY = "model.backbone.pretrained_backbone_path"


def _one_gpu(action: str) -> dict[str, Any]:
    # The job holds one GPU (CUDA_VISIBLE_DEVICES / --gpus device=N): inside, it is device 0.
    return {f"{action}.num_gpus": 1, f"{action}.gpu_ids": [0], f"{action}.num_nodes": 1}


def _absolute_datasets(spec: dict, base_dir: Path | None) -> dict[str, str]:
    """Relative dataset paths resolved against ``base_dir``: TAO would read them from its cwd."""
    overrides = {}
    if base_dir is None:
        return overrides
    for split in DATASET_SPLITS:
        for leaf in ("csv_path", "images_dir"):
            key = f"dataset.classify.{split}_dataset.{leaf}"
            value = tao_spec.get_dotted(spec, key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                overrides[key] = str(Path(base_dir) / value)
    return overrides


def train_spec(spec: dict, results_dir: Path, *, backbone: Path | None, pretrained: Path | None = None,
               base_dir: Path | None = None, source: str = "spec") -> dict:
    """TAO ``train`` spec: checkpoints and status.json go to ``results_dir``."""
    overrides: dict[str, Any] = {
        **_absolute_datasets(spec, base_dir),
        "results_dir": str(results_dir),
        "train.results_dir": str(results_dir),
        # Every job trains afresh (a warm start is pretrained_model_path, as TAO's DEFT loop does).
        "train.resume_training_checkpoint_path": None,
        **_one_gpu("train"),
    }
    if backbone is not None:
        overrides[BACKBONE_KEY] = str(backbone)
    if pretrained is not None:
        overrides["train.pretrained_model_path"] = str(pretrained)
    return _job_spec(spec, overrides, "train", source)


def inference_spec(spec: dict, results_dir: Path, *, checkpoint: Path, csv_path: Path, images_dir: Path,
                   backbone: Path | None, source: str = "spec") -> dict:
    """TAO ``inference`` spec: scores ``csv_path`` with ``checkpoint`` into ``results_dir/inference.csv``."""
    overrides: dict[str, Any] = {
        "results_dir": str(results_dir),
        "inference.results_dir": str(results_dir),
        "inference.checkpoint": str(checkpoint),
        "inference.trt_engine": "",  # score the PyTorch checkpoint itself
        "dataset.classify.infer_dataset.csv_path": str(csv_path),
        "dataset.classify.infer_dataset.images_dir": str(images_dir),
        **_one_gpu("inference"),
    }
    if backbone is not None:
        overrides[BACKBONE_KEY] = str(backbone)
    return _job_spec(spec, overrides, "inference", source)


def _job_spec(spec: dict, overrides: dict[str, Any], action: str, source: str) -> dict:
    job = tao_spec.with_overrides(spec, overrides)
    # Sections of other actions (a workspace spec carries evaluate/inference/export for TAO's other
    # commands) are not read by this one and are not in its schema: the job spec leaves them out.
    known = tao_spec.schema_properties(action)
    action_sections = {*tao_spec.SCHEMA_ACTIONS, *tao_spec.OTHER_ACTION_SECTIONS}
    job = {key: value for key, value in job.items() if key in known or key not in action_sections}
    check_job_spec(job, action, source)
    return job


def check_job_spec(job: dict, action: str, source: str) -> None:
    """TAO's schema of ``action`` accepts every key and value, and it is a classify spec."""
    tao_spec.validate_spec(job, f"{source} (TAO {action} spec)", action=action)
    task = job.get("task")
    if task != "classify":
        raise InputError(f"{source}: spec key 'task' is {task!r}; TAO's Visual ChangeNet needs task: classify "
                         "for PASS/defect pairs (its default is segment)")


# ---- the GPU-memory rule ----------------------------------------------------------------------------
# NVIDIA's AOI baseline spec: C-RADIOv2-B at 224x224 fits batch 16 on a 48 GB GPU and 8 on 24 GB;
# batch 64 runs out of memory on 48 GB. No other backbone or size has a documented rule.
RULE_BACKBONE = "c_radio_v2_vit_base_patch16_224"
RULE_SIZE = (224, 224)
RULE_LIMITS = ((48.0, 16), (24.0, 8))  # (GPU memory GB at least, largest batch size)


def max_batch_size(backbone: str | None, width: int | None, height: int | None,
                   gpu_memory_gb: float) -> int | None:
    """The largest documented batch size for this model on this GPU; 0 when none fits; None when no
    rule is documented for the backbone/size (then nothing is checked)."""
    if backbone != RULE_BACKBONE or (width, height) != RULE_SIZE:
        return None
    return next((batch for memory, batch in RULE_LIMITS if gpu_memory_gb >= memory), 0)
