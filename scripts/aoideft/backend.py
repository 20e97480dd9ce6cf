"""The one interface the workflow uses to train, score and embed, whatever runs the model.

``EmbeddedBackend`` runs the bundled ChangeNet-lite (trainer.py / inference.py) in-process. A TAO
container backend can be added later behind the same three methods without touching the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aoideft import inference, trainer
from aoideft.errors import InputError

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

    def embed(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_npy: Path) -> Path:
        """Write float32 [N, D] embeddings + ``csvdata.embedding_keys_path(out_npy)``; returns ``out_npy``."""
        ...


@dataclass(frozen=True)
class EmbeddedBackend:
    """ChangeNet-lite in this process; ``options`` are ``trainer.TrainOptions`` fields (device, threads,
    base_width, light_stacking, compile, decode_cache, verbose); inference uses ``device`` and
    ``decode_cache``."""

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

    def embed(self, checkpoint: Path, csv_path: Path, images_dir: Path, out_npy: Path) -> Path:
        inference.export_embeddings(checkpoint, csv_path, images_dir, out_npy, device=self.options.get("device"),
                                    decode_cache=self.options.get("decode_cache"))
        return Path(out_npy)


def get_backend(name: str = "embedded", **options: Any) -> TrainerBackend:
    """The backend called ``name``; ``options`` configure it (see EmbeddedBackend)."""
    if name == "embedded":
        return EmbeddedBackend(dict(options))
    if name == "tao":
        raise InputError("trainer backend 'tao' (TAO containers) is not implemented yet; use backend 'embedded'.")
    raise InputError(f"unknown trainer backend {name!r}; choose one of {list(BACKENDS)}.")
