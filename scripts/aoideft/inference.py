"""Score and embed golden/test pairs with a ChangeNet-lite checkpoint.

``run_inference`` writes ``inference.csv`` = the input CSV's rows and columns, unchanged, plus
``siamese_score`` (softmax probability of the defect class). ``export_embeddings`` writes the pooled
fused feature of every row as float32 ``[N, D]`` ``.npy`` plus ``<stem>.keys.csv`` (input_path,
object_name, label in row order) for cosine k-NN mining. Lights, image size and extension come from the
checkpoint's ``arch``, so a checkpoint is all inference needs besides the CSV.

Also the runtime helpers the trainer shares: device choice, bf16 autocast on CUDA, CSV decoding and the
batched forward pass.

CLI: ``aoideft infer --checkpoint C --csv X --images-dir D --out O.csv`` and
``aoideft embed --checkpoint C --csv X --images-dir D --out O.npy``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aoideft import csvdata, fsutil, images, registration
from aoideft.checkpoint import build_model_from_checkpoint
from aoideft.decode_cache import DecodeCache
from aoideft.errors import InputError
from aoideft.model import ChangeNetLite, ModelArch, defect_scores
from aoideft.progress import Progress

SCORE_COLUMN = "siamese_score"
KEY_COLUMNS = ("input_path", "object_name", "label")
CUDA_BATCH_SIZE = 512  # inference batch on a GPU (the CPU keeps the callers' 64)


def resolve_device(name: str | None = None) -> torch.device:
    """``None``/``auto``: CUDA when visible (CUDA_VISIBLE_DEVICES is respected), else CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r} is not a device name; use cpu, cuda or cuda:<index>.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {name!r} was asked for but no CUDA device is visible (check CUDA_VISIBLE_DEVICES); "
            "use --device cpu."
        )
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device {name!r} is not supported; use cpu or cuda.")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed), plain float32 on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def prepare_model(model: ChangeNetLite, device: torch.device) -> ChangeNetLite:
    model = model.to(device)
    if device.type == "cuda":
        # channels_last weights make cuDNN pick NHWC kernels for the whole network.
        model = model.to(memory_format=torch.channels_last)
    return model


def decode_for_arch(
    arch: ModelArch, csv_path: str | Path, images_dir: str | Path, *, threads: int | None = None,
    cache: DecodeCache | None = None, device: torch.device | None = None,
) -> tuple[pd.DataFrame, images.DecodedPairs]:
    """Validate a pairs CSV and decode all its images, in the arch's lights and size, into memory
    (through ``cache`` when given: see decode_cache.py; the image files are checked unless the cache
    holds every row); with ``arch.align`` ``phase`` every golden is
    then registered to its test (registration.align_pairs, computed on ``device``, default CPU), once
    for the job (augmentation later moves golden and test together); ``phase_blur`` also matches the
    focus of the pair's two images.

    Returns the CSV's rows (every column, as text) and uint8 [N, L, C, H, W] golden/test CPU tensors.
    """
    lights = list(arch.lights)
    frame = csvdata.read_pairs_csv(
        csv_path, images_dir=images_dir, lights=lights, image_ext=arch.image_ext, source=str(csv_path),
        check_files=False,
    )

    def check_files() -> None:
        # Reads every file (header, end marker, content hash): on a large workspace most of a warm
        # scoring job's time (benchmarks/README.md), so it runs only when some row is decoded anew.
        csvdata.check_image_files(frame, images_dir=images_dir, lights=lights, image_ext=arch.image_ext,
                                  source=str(csv_path))

    decoded = images.decode_pairs(
        frame,
        images_dir=images_dir,
        lights=lights,
        image_ext=arch.image_ext,
        size=(arch.image_width, arch.image_height),
        channels=arch.channels,
        num_threads=threads or torch.get_num_threads(),
        source=str(csv_path),
        cache=cache,
        prepare=registration_step(arch, device),
        before_decoding=check_files,
    )
    return frame, decoded


def registration_step(arch: ModelArch, device: torch.device | None) -> images.Preparation | None:
    """The arch's registration as a decoding step (its results are cached with the decoded pairs)."""
    if arch.align == "none":
        return None
    return images.Preparation(
        name=f"align-{arch.align}-{arch.align_max_shift_px:g}",
        apply=lambda golden, test: registration.align_pairs(golden, test, max_shift=arch.align_max_shift_px,
                                                            device=device, blur=arch.align == "phase_blur"))


@torch.inference_mode()
def predict(
    model: ChangeNetLite,
    golden: torch.Tensor,
    test: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    output: str = "logits",
    progress: Progress | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode forward in batches, float32 on CPU: ``output`` 'logits' [N, 2], 'embedding' [N, D], or
    'both' (embedding, logits) from one pass (the head runs on the embedding it returns). ``progress``
    counts the rows done."""
    model.eval()
    embeddings, logits = [], []
    for start in range(0, len(golden), batch_size):
        batch_golden = golden[start : start + batch_size].to(device, non_blocking=True)
        batch_test = test[start : start + batch_size].to(device, non_blocking=True)
        with autocast(device):
            if output == "logits":
                logits.append(model(batch_golden, batch_test).float().cpu())
            else:
                embedding = model.embed(batch_golden, batch_test)
                embeddings.append(embedding.float().cpu())
                if output == "both":
                    logits.append(model.head(embedding).float().cpu())
        if progress is not None:
            progress.advance(len(batch_golden))
    def as_tensor(chunks: list[torch.Tensor], width: int) -> torch.Tensor:
        return torch.cat(chunks) if chunks else torch.empty(0, width)

    if output == "logits":
        return as_tensor(logits, 2)
    if output == "embedding":
        return as_tensor(embeddings, model.arch.embedding_dim)
    return as_tensor(embeddings, model.arch.embedding_dim), as_tensor(logits, 2)


def _model_outputs(
    checkpoint: str | Path, csv_path: str | Path, images_dir: str | Path, *, output: str, batch_size: int,
    device: str | None, decode_cache: str | Path | None,
) -> tuple[pd.DataFrame, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """(CSV rows, model outputs per row): the checkpoint's model over every pair of ``csv_path``."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":  # a forward pass is cheap there; launches and copies per batch are not
        batch_size = max(batch_size, CUDA_BATCH_SIZE)
    model = prepare_model(build_model_from_checkpoint(checkpoint), resolved)
    cache = DecodeCache(Path(decode_cache)) if decode_cache else None
    rows, decoded = decode_for_arch(model.arch, csv_path, images_dir, cache=cache, device=resolved)
    step = {"logits": "inference", "embedding": "embedding", "both": "embedding + scores"}[output]
    progress = Progress(f"{step} {csv_path}", len(rows)).start(f"({Path(checkpoint).name} on {resolved})")
    outputs = predict(model, decoded.golden, decoded.test, batch_size=batch_size, device=resolved, output=output,
                      progress=progress)
    progress.finish()
    return rows, outputs


def run_inference(
    checkpoint: str | Path,
    csv_path: str | Path,
    images_dir: str | Path,
    out_csv: str | Path,
    *,
    batch_size: int = 64,
    device: str | None = None,
    decode_cache: str | Path | None = None,
) -> pd.DataFrame:
    """Score every row of ``csv_path``; writes ``out_csv`` (input columns + siamese_score) atomically."""
    rows, logits = _model_outputs(checkpoint, csv_path, images_dir, output="logits", batch_size=batch_size,
                                  device=device, decode_cache=decode_cache)
    rows = rows.copy()
    rows[SCORE_COLUMN] = defect_scores(logits).numpy()
    fsutil.write_csv(out_csv, rows)
    return rows


def export_embeddings(
    checkpoint: str | Path,
    csv_path: str | Path,
    images_dir: str | Path,
    out_npy: str | Path,
    *,
    batch_size: int = 64,
    device: str | None = None,
    decode_cache: str | Path | None = None,
    scores_csv: str | Path | None = None,
) -> np.ndarray:
    """Write float32 [N, D] embeddings to ``out_npy`` and the row keys to ``embedding_keys_path(out_npy)``;
    with ``scores_csv`` also ``run_inference``'s CSV (the input rows + ``siamese_score``) from the same
    forward pass."""
    output = "embedding" if scores_csv is None else "both"
    rows, outputs = _model_outputs(checkpoint, csv_path, images_dir, output=output, batch_size=batch_size,
                                   device=device, decode_cache=decode_cache)
    embeddings, logits = (outputs, None) if scores_csv is None else outputs
    vectors = embeddings.numpy().astype(np.float32)
    with fsutil.atomic_path(out_npy) as tmp, open(tmp, "wb") as handle:
        np.save(handle, vectors)
    fsutil.write_csv(csvdata.embedding_keys_path(out_npy), rows[list(KEY_COLUMNS)])
    if logits is not None:
        scored = rows.copy()
        scored[SCORE_COLUMN] = defect_scores(logits).numpy()
        fsutil.write_csv(scores_csv, scored)
    return vectors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aoideft", description="Score or embed pairs with a ChangeNet-lite model.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, out_help in (("infer", "inference CSV to write"), ("embed", "embeddings .npy to write")):
        sub = commands.add_parser(command)
        sub.add_argument("--checkpoint", required=True, type=Path)
        sub.add_argument("--csv", required=True, type=Path, help="pairs CSV (input_path, golden_path, label, ...)")
        sub.add_argument("--images-dir", required=True, type=Path)
        sub.add_argument("--out", required=True, type=Path, help=out_help)
        sub.add_argument("--batch-size", type=int, default=64)
        sub.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``infer ...`` or ``embed ...``; an InputError prints its message and exits 2."""
    args = build_parser().parse_args(argv)
    action = run_inference if args.command == "infer" else export_embeddings
    try:
        action(args.checkpoint, args.csv, args.images_dir, args.out, batch_size=args.batch_size, device=args.device)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def infer_main(argv: Sequence[str]) -> int:
    """``aoideft infer ARGS``: ``argv`` are the arguments after the subcommand."""
    return main(["infer", *argv])


def embed_main(argv: Sequence[str]) -> int:
    """``aoideft embed ARGS``: ``argv`` are the arguments after the subcommand."""
    return main(["embed", *argv])


if __name__ == "__main__":
    sys.exit(main())
