"""What the pre-flight checks before a TAO run: the image, the staged files, the GPU memory rule.

Each problem is one line saying what to do; the pre-flight stops with all of them together, so a
first setup on a cluster sees every missing piece in one run of `snakemake -n`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .. import spec as tao_spec, spec_settings
from ..errors import InputError
from . import runtime, specs

BATCH_KEY = "dataset.classify.batch_size"


@dataclass
class Readiness:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def require(self) -> None:
        if self.problems:
            raise InputError("TAO backend not ready: " + "; ".join(self.problems))


def check(setup: runtime.TaoSetup, *, spec: dict | None, pinned: dict[str, Any], batch_search_max: int | None,
          apptainer_enabled: bool | None) -> Readiness:
    """``spec``: the workspace spec (None while the demo workspace is still to be generated);
    ``pinned``: automl.pinned, applied to every training job; ``batch_search_max``: the largest batch
    size the AutoML search space can propose; ``apptainer_enabled``: whether Snakemake runs with
    ``--sdm apptainer`` (None: not known here)."""
    out = Readiness()
    out.lines.append(f"backend tao: NVIDIA Visual ChangeNet via `{runtime.ENTRYPOINT} train|inference` in the TAO "
                     f"PyTorch image, runtime {setup.runtime}")
    present, line = runtime.image_status(setup)
    out.lines.append("image: " + line)
    if not present:
        out.problems.append("image " + line)
    ngc = "SET" if os.environ.get("NGC_API_KEY") else "UNSET"
    out.lines.append(f"NGC_API_KEY: {ngc} (needed only to pull nvcr.io images)")
    if setup.runtime == "apptainer":
        out.lines.append(f"snakemake needs: --sdm apptainer --apptainer-args \"{runtime.bind_args(setup)}\"")
        if apptainer_enabled is False:
            out.problems.append("tao.runtime apptainer runs the model rules in tao.image through Snakemake: start "
                                f"snakemake with --sdm apptainer --apptainer-args \"{runtime.bind_args(setup)}\"")
    _check_backbone(setup, out)
    _check_embedding_checkpoint(setup, spec, pinned, out)
    _check_batch_size(setup, spec, pinned, batch_search_max, out)
    return out


def _check_backbone(setup: runtime.TaoSetup, out: Readiness) -> None:
    path = setup.pretrained_backbone
    if path is None:
        out.problems.append("pretrained backbone: not set: set tao.pretrained_backbone to the local weights file "
                            "(e.g. C-RADIOv2-B); TAO does not download it")
    elif not path.is_file():
        out.problems.append(f"pretrained backbone {path}: MISSING (not a local file; tao.pretrained_backbone)")
    else:
        out.lines.append(f"pretrained backbone: {path} PRESENT ({path.stat().st_size / 1e6:.0f} MB)")


def _check_embedding_checkpoint(setup: runtime.TaoSetup, spec: dict | None, pinned: dict[str, Any],
                                out: Readiness) -> None:
    path = setup.embedding_checkpoint
    if path is None:
        out.problems.append("embedding checkpoint: not set: set tao.embedding_checkpoint to a ChangeNet-lite "
                            "best_val.pth (`aoideft train --spec <workspace spec> --results-dir DIR`)")
        return
    if not path.is_file():
        out.problems.append(f"embedding checkpoint {path}: MISSING (tao.embedding_checkpoint)")
        return
    # Imported here: it imports torch, which the parse-time gate (every `snakemake -n`) must not pay.
    from .. import checkpoint as ckpt_io

    try:
        lights = tuple(ckpt_io.load_checkpoint(path)["arch"]["lights"])
    except InputError as error:
        out.problems.append(f"embedding checkpoint: {error}")
        return
    # The job specs' lights: the spec with the pinned values (with_overrides clamps checkpoint_interval).
    wanted = spec_settings.train_settings(tao_spec.with_overrides(spec, pinned)).lights if spec is not None else lights
    if lights != wanted:
        out.problems.append(f"embedding checkpoint {path} was trained on lights {', '.join(lights)} but the spec "
                            f"uses {', '.join(wanted)}: train it on this workspace")
        return
    out.lines.append(f"embeddings for RCA clustering and mining: ChangeNet-lite {path} (TAO exports none)")


def _check_batch_size(setup: runtime.TaoSetup, spec: dict | None, pinned: dict[str, Any],
                      batch_search_max: int | None, out: Readiness) -> None:
    if spec is None:
        out.lines.append("GPU memory / batch size: checked once the workspace exists (rule preflight)")
        return
    job = tao_spec.with_overrides(spec, pinned)
    backbone = tao_spec.get_dotted(job, "model.backbone.type")
    width, height = (tao_spec.get_dotted(job, f"dataset.classify.image_{axis}") for axis in ("width", "height"))
    batch = max(int(tao_spec.get_dotted(job, BATCH_KEY) or tao_spec.schema_default(BATCH_KEY)), batch_search_max or 0)
    memory = setup.gpu_memory_gb
    source = "tao.gpu_memory_gb"
    if memory is None:
        memory, source = runtime.detected_gpu_memory_gb(), "nvidia-smi on this host"
    if specs.max_batch_size(backbone, width, height, memory or 0.0) is None:
        out.lines.append(f"batch size {batch}: no documented GPU-memory rule for {backbone} at {width}x{height}; "
                         "not checked")
        return
    if memory is None:
        out.problems.append("GPU memory unknown (no nvidia-smi here): set tao.gpu_memory_gb to the memory of the "
                            "GPUs model jobs get, for the batch-size rule")
        return
    limit = specs.max_batch_size(backbone, width, height, memory)
    rule = f"{backbone} at {width}x{height} on {memory:.0f} GB ({source})"
    if limit == 0:
        out.problems.append(f"{rule}: NVIDIA documents no batch size below 24 GB of GPU memory; use a larger GPU")
    elif batch > limit:
        out.problems.append(f"batch size {batch} is too large for {rule}: at most {limit} (batch 16 on 48 GB, 8 on "
                            f"24 GB); set automl.pinned {BATCH_KEY}: {limit}")
    else:
        out.lines.append(f"batch size {batch} <= {limit} for {rule}")
