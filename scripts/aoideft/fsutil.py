"""Atomic file writes (a temp file in the target directory, fsync, then rename), checked JSON reads, file hashes.

A reader (or a workflow killed mid-write) never sees a partial file under its final name. The temp
file is created with mode 0666 minus the user's umask, as ``open`` would create the file (``mkstemp``
gives 0600, which a rename keeps: colleagues on a shared run directory could not read the results).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success rename it over ``path``, else delete it.

    ``durable=False`` skips the fsync before the rename: for files whose readers check them and
    can rebuild them (the decode cache), where a sync per small file would cost more than a rebuild.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp_file(target)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A defined stop with one line, not a traceback; the rename never happened.
        raise InputError(f"{target}: no space left on the device while writing it; free space under "
                         f"{target.parent} and rerun (the previous {target.name}, if any, is unchanged)") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _new_temp_file(target: Path) -> Path:
    """An empty, new file beside ``target``, created like ``open`` creates one: mode 0666 minus the
    umask (and the directory's default ACL), so the renamed result is as readable as any other file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        candidate = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(candidate, flags, 0o666))
        except FileExistsError:
            continue
        return candidate


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_jsonl(path: str | os.PathLike, rows) -> None:
    """One JSON object per line (metrics.jsonl, loop_log.jsonl)."""
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV (no index)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_json_input(path: str | os.PathLike, *, what: str, fix: str) -> Any:
    """``read_json`` for a file a user or an earlier step provides: a missing or unreadable file is
    one InputError naming the file, what it should be (``what``) and what to do (``fix``)."""

    try:
        return read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no {what}; {fix}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: corrupt {what}, not readable JSON ({exc}); {fix}") from None


def _json_default(value: Any) -> Any:
    """Make numpy scalars/arrays and paths JSON-serialisable."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
