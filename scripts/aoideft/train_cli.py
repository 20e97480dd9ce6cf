"""``aoideft train --spec SPEC --results-dir DIR [--pretrained CKPT] [--set key=value ...]
[--device cpu|cuda] [--threads N]``: the trainer (trainer.py) from the command line, with a TAO
spec's keys overridden from it."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from aoideft import spec as spec_module
from aoideft.errors import InputError
from aoideft.trainer import TrainOptions, train_from_spec

_EXPONENT_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+")


def apply_overrides(spec: dict[str, Any], assignments: Sequence[str]) -> None:
    """``key=value`` pairs (dotted keys, YAML values) set into ``spec`` in place."""
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise InputError(f"--set {assignment!r} must look like dotted.key=value, e.g. train.optim.lr=0.001.")
        spec_module.set_dotted(spec, key.strip(), parse_override_value(value))


def parse_override_value(text: str) -> Any:
    """A YAML scalar/list; ``1e-3`` is a float, as in spec files (YAML 1.1 alone would keep it a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aoideft train", description="Train ChangeNet-lite from a TAO classify spec.")
    parser.add_argument("--spec", required=True, type=Path, help="TAO visual_changenet classify spec (YAML)")
    parser.add_argument("--results-dir", required=True, type=Path)
    parser.add_argument("--base-dir", type=Path, default=None,
                        help="resolve the spec's relative csv_path/images_dir here (default: the workspace "
                             "root when the spec is in <workspace>/specs/, else the spec's folder)")
    parser.add_argument("--pretrained", type=Path, default=None, help="warm-start checkpoint (weights only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: SLURM_CPUS_PER_TASK or all)")
    parser.add_argument("--base-width", type=int, default=TrainOptions.base_width)
    parser.add_argument("--light-stacking", choices=("spec", "channels"), default=TrainOptions.light_stacking)
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward pass")
    parser.add_argument("--ema-epochs", type=float, default=TrainOptions.ema_epochs,
                        help="time constant of the saved weight average, in epochs (0: raw weights)")
    parser.add_argument("--decode-cache", default=None, help="decode-cache folder shared by jobs (decode_cache.py)")
    parser.add_argument("--align", choices=("phase", "phase_blur", "none"), default=TrainOptions.align,
                        help="register each golden to its test when pairs are decoded, phase_blur also matching their "
                             "focus (default: phase_blur)")
    parser.add_argument("--shift-tolerance-px", type=float, default=TrainOptions.shift_tolerance_px,
                        help="shift-tolerant feature difference, input pixels (0: off)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return parser


def workspace_root_of(spec_path: Path) -> Path:
    """Where a spec's relative dataset paths start: a TAO workspace keeps its spec in ``specs/`` and
    its paths relative to the workspace root; a spec elsewhere is read relative to its own folder."""
    spec_path = Path(spec_path).resolve()
    return spec_path.parent.parent if spec_path.parent.name == "specs" else spec_path.parent


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = spec_module.load_spec(args.spec)
        apply_overrides(spec, args.overrides)
        options = TrainOptions(
            device=args.device,
            threads=args.threads,
            base_width=args.base_width,
            light_stacking=args.light_stacking,
            compile=args.compile,
            ema_epochs=args.ema_epochs,
            decode_cache=args.decode_cache,
            align=args.align,
            shift_tolerance_px=args.shift_tolerance_px,
            verbose=not args.quiet,
        )
        summary = train_from_spec(
            spec,
            args.results_dir,
            spec_base_dir=args.base_dir or workspace_root_of(args.spec),
            pretrained=args.pretrained,
            options=options,
            source=str(args.spec),
        )
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"best epoch {summary['best_epoch'] + 1}/{summary['epochs_run']} "
        f"val_FAR@100%R {summary['best_val_far_pct']:.1f}% "
        f"({summary['pairs_per_second']:.0f} pairs/s on {summary['device']}); wrote {args.results_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
