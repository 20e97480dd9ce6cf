"""The validated workflow config, with every path resolved once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunSettings:
    repo_root: Path
    run_dir: Path
    workspace: Path
    spec_path: Path
    train_csv: Path
    validation_csv: Path
    kpi_csv: Path
    pool_csv: Path
    images_dir: Path
    pool_images_dir: Path
    synthetic_dir: Path
    config: dict[str, Any] = field(repr=False, compare=False)

    @property
    def run_images(self) -> Path:
        """Image root of combined training CSVs (links to the workspace and pool, plus SDG)."""
        return self.run_dir / "images"

    @property
    def automl(self) -> dict[str, Any]:
        return self.config["automl"]

    @property
    def deft(self) -> dict[str, Any]:
        return self.config["deft"]

    @property
    def deft_seed(self) -> int:
        """Seed of the DEFT stages; each retrain uses deft_seed + iteration."""
        seed = self.config["deft"].get("seed")
        return int(self.automl["seed"] if seed is None else seed)

    @property
    def kpi_target(self) -> float:
        return float(self.config["kpi"]["target_far_pct"])

    @property
    def kpi_holdout(self) -> float:
        """Share of the KPI rows the loop never reads; 0 = TAO's behaviour (README)."""
        return float(self.config["deft"]["kpi_holdout"])

    @property
    def selects_on_validation(self) -> bool:
        """Every model choice on validation with the accept-or-keep gate (else TAO's KPI-set choices)."""
        return self.kpi_holdout > 0


def resolve(config: dict[str, Any], repo_root: Path) -> RunSettings:
    """Resolve the config's relative paths: run_dir/workspace against the repository root,
    dataset paths against the workspace."""
    repo_root = Path(repo_root).resolve()

    def from_repo(value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (repo_root / path)

    workspace = from_repo(config["workspace"])
    datasets = config.get("datasets", {})

    def from_workspace(key: str, default: str) -> Path:
        path = Path(datasets.get(key, default)).expanduser()
        return path if path.is_absolute() else (workspace / path)

    return RunSettings(
        repo_root=repo_root,
        run_dir=from_repo(config["run_dir"]),
        workspace=workspace,
        spec_path=workspace / config.get("spec", "specs/baseline_spec.yaml"),
        train_csv=from_workspace("train_csv", "train/base/training_set.csv"),
        validation_csv=from_workspace("validation_csv", "train/base/validation_set.csv"),
        kpi_csv=from_workspace("kpi_csv", "kpi/testing_set.csv"),
        pool_csv=from_workspace("pool_csv", "augmentation/mining_pool/mining_pool.csv"),
        images_dir=from_workspace("images_dir", "images"),
        pool_images_dir=from_workspace("pool_images_dir", "images"),
        synthetic_dir=from_workspace("synthetic_dir", "augmentation/synthetic"),
        config=config,
    )


def from_snakemake(smk) -> RunSettings:
    """Settings inside a rule script: the scripts live in <repo>/scripts."""
    return resolve(smk.config, Path(smk.scriptdir).parent)


def tao_setup(settings: RunSettings):
    """The config's ``tao:`` section with its paths resolved; the read-only mounts are the workspace
    and the image roots the CSVs point into."""
    from ..tao.runtime import TaoSetup, resolve_image

    tao = settings.config["tao"]
    base = settings.repo_root

    def path(value: str | None) -> Path | None:
        if not value:
            return None
        found = Path(value).expanduser()
        return found if found.is_absolute() else base / found

    backbone = path(tao["pretrained_backbone"])
    if backbone is None and settings.spec_path.is_file():
        from ..spec import get_dotted, load_spec

        backbone = path(get_dotted(load_spec(settings.spec_path), "model.backbone.pretrained_backbone_path"))
    return TaoSetup(
        runtime=tao["runtime"],
        image=resolve_image(tao["image"], tao["runtime"], base),
        pretrained_backbone=backbone,
        embedding_checkpoint=path(tao["embedding_checkpoint"]),
        gpu_memory_gb=tao["gpu_memory_gb"],
        docker_args=tuple(tao["docker_args"]),
        run_dir=settings.run_dir,
        read_only_roots=(settings.workspace, settings.images_dir, settings.pool_images_dir, settings.synthetic_dir),
        repo_root=settings.repo_root,
    )


def model_backend(settings: RunSettings):
    """The configured trainer backend, using the threads Snakemake gave this job."""
    import torch

    from ..backend import get_backend

    # One cache per run: trials, inference and embedding jobs decode each image file once.
    cache = str(settings.run_dir / "cache" / "decoded") if settings.config["decode_cache"] else None
    if settings.config["backend"] == "tao":
        return get_backend("tao", setup=tao_setup(settings),
                           architecture_spec=settings.run_dir / "specs" / "baseline_spec_automl.yaml",
                           device=settings.config["embedded"]["device"], decode_cache=cache)
    options = {**settings.config["embedded"], "threads": torch.get_num_threads(), "decode_cache": cache}
    return get_backend(settings.config["backend"], **options)
