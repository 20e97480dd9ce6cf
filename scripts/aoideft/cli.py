"""`aoideft <command>`: the pieces of the pipeline, runnable by hand.

    aoideft demo      generate the embedded demo workspace
    aoideft train     train ChangeNet-lite from a TAO spec
    aoideft infer     write inference.csv (input rows + siamese_score)
    aoideft embed     export embeddings for mining
    aoideft evaluate  FAR@100% recall and the rest of the KPI report
    aoideft spec      validate a TAO spec and list what the embedded model ignores
    aoideft check-csv validate a pairs CSV and its images
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": ("aoideft.demo.workspace", "main"),
    "train": ("aoideft.train_cli", "main"),
    "infer": ("aoideft.inference", "infer_main"),
    "embed": ("aoideft.inference", "embed_main"),
    "evaluate": ("aoideft.kpi_report", "main"),
    "spec": ("aoideft.spec_settings", "main"),
    "check-csv": ("aoideft.csvdata", "main"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, function = COMMANDS[argv[0]]
    return int(getattr(importlib.import_module(module_name), function)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
