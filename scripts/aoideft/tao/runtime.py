"""Where and how TAO's ``visual_changenet`` runs: the resolved ``tao:`` config, mounts, command lines.

Two runtimes:

- ``apptainer`` (SLURM clusters): Snakemake's own container support runs each model rule inside
  ``tao.image`` (``container:`` on the rule, ``snakemake --sdm apptainer``). The rule script is then
  already in the image and runs ``visual_changenet <action> -e <spec>`` directly; the binds come from
  ``--apptainer-args`` (``bind_args`` prints the ones a run needs).
- ``docker`` (a workstation): the rule runs on the host and starts one ``docker run`` per TAO action.

Container-side paths equal host paths: every directory is mounted at its own path. The run
directory's ``images/`` holds absolute links into the workspace and pool image roots, and the specs
and CSVs name absolute host paths; mounted in place they all stay valid inside the container with no
rewriting, which is also what apptainer's ``--bind DIR`` does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

RUNTIMES = ("apptainer", "docker")
# The TAO PyTorch image's command for Visual ChangeNet: the launcher's `tao model visual_changenet
# <action> -e <spec>` runs `visual_changenet <action> -e <spec>` inside the image (TAO docs).
ENTRYPOINT = "visual_changenet"
ACTIONS = ("train", "evaluate", "inference")
DOCKER_PREFIX = "docker://"


@dataclass(frozen=True)
class TaoSetup:
    """The ``tao:`` config section, resolved: paths absolute, the image URI in its runtime's form."""

    runtime: str
    image: str | None
    pretrained_backbone: Path | None
    embedding_checkpoint: Path | None
    gpu_memory_gb: float | None
    docker_args: tuple[str, ...]
    run_dir: Path
    read_only_roots: tuple[Path, ...]
    repo_root: Path | None = None

    def mounts(self, *extra_read_only: Path | None) -> list[Mount]:
        """What a TAO job reads and writes: the run directory, the input roots, the backbone's folder."""
        roots = [*self.read_only_roots, *([self.pretrained_backbone.parent] if self.pretrained_backbone else []),
                 *(path for path in extra_read_only if path is not None)]
        # An absent root (no synthetic pairs) has nothing to read; docker would create it as root.
        return job_mounts(self.run_dir, [root for root in roots if root.exists()])


def resolve_image(image: str | None, runtime: str, base: Path) -> str | None:
    """The image reference each runtime takes: docker wants ``registry/name:tag``; apptainer (and
    Snakemake's ``container:``) wants ``docker://registry/name:tag`` or a local ``.sif`` path."""
    if not image:
        return None
    image = image.strip()
    if runtime == "docker":
        return image[len(DOCKER_PREFIX):] if image.startswith(DOCKER_PREFIX) else image
    if "://" in image:
        return image
    local = Path(image).expanduser()
    if image.endswith((".sif", ".simg")) or local.is_absolute() or image.startswith("."):
        return str(local if local.is_absolute() else (base / local))
    return DOCKER_PREFIX + image


@dataclass(frozen=True)
class Mount:
    """A host directory mounted at the same path in the container."""

    path: Path
    read_only: bool

    def docker_args(self) -> list[str]:
        return ["-v", self.bind_arg()]

    def bind_arg(self) -> str:
        return f"{self.path}:{self.path}" + (":ro" if self.read_only else "")


def job_mounts(run_dir: Path, read_only: Sequence[Path]) -> list[Mount]:
    """The run directory read-write and each input root read-only, without redundant nesting.

    A directory inside a mount of the same or a more permissive mode is covered by it; the run
    directory inside a read-only workspace gets its own read-write mount on top.
    """
    candidates = [Mount(Path(run_dir).resolve(), False)]
    candidates += [Mount(Path(path).resolve(), True) for path in read_only]
    kept: list[Mount] = []
    # Outer directories first, read-write before read-only at one path: a candidate is then covered
    # by a kept mount above (or at) it whose mode is as permissive.
    for mount in sorted(candidates, key=lambda m: (len(m.path.parts), m.read_only, str(m.path))):
        if not any((k.path == mount.path or k.path in mount.path.parents) and k.read_only <= mount.read_only
                   for k in kept):
            kept.append(mount)
    return kept


def container_path(path: Path, mounts: Sequence[Mount]) -> str:
    """The path TAO sees for a host path; it must lie inside a mount, else TAO cannot read it."""
    path = Path(path).absolute()
    if any(mount.path == path or mount.path in path.parents for mount in mounts):
        return str(path)
    raise InputError(f"{path} is outside every directory mounted into the TAO container "
                     f"({', '.join(str(m.path) for m in mounts)}); keep inputs under the workspace, the image "
                     "roots or the run directory (config: workspace, datasets.*, tao.pretrained_backbone)")


def tao_command(action: str, spec_file: Path) -> list[str]:
    if action not in ACTIONS:
        raise ValueError(f"unknown TAO action {action!r}")
    return [ENTRYPOINT, action, "-e", str(spec_file)]


def docker_command(setup: TaoSetup, action: str, spec_file: Path, workdir: Path, *,
                   gpu: str | None, user: str) -> list[str]:
    """``docker run`` of one TAO action: the job's GPU, the user's uid:gid (files in the run
    directory stay the user's), every mount in place, working directory = the action's results."""
    mounts = setup.mounts()
    for path in (spec_file, workdir):
        container_path(path, mounts)
    command = ["docker", "run", "--rm", "--ipc=host", "--user", user,
               "--gpus", f"device={gpu}" if gpu else "all"]
    for mount in mounts:
        command += mount.docker_args()
    return [*command, "-w", str(workdir), *setup.docker_args, str(setup.image), *tao_command(action, spec_file)]


def launch_command(setup: TaoSetup, action: str, spec_file: Path, workdir: Path) -> list[str]:
    """The command a model job runs for one TAO action, in this job's environment."""
    if setup.runtime == "docker":
        # gpu_slots has narrowed CUDA_VISIBLE_DEVICES to this job's device; docker takes host indices.
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or None
        return docker_command(setup, action, spec_file, workdir, gpu=gpu, user=f"{os.getuid()}:{os.getgid()}")
    # apptainer: Snakemake already runs this job inside tao.image (the rule's container:).
    return tao_command(action, spec_file)


def bind_args(setup: TaoSetup) -> str:
    """``--apptainer-args`` a run needs: the GPU, every mount, and read-only this repository (the rule
    scripts Snakemake runs inside the image import this checkout's ``aoideft`` from ``scripts/``) and
    the embedding checkpoint's folder (the embed rule runs inside the image too)."""
    embedder = setup.embedding_checkpoint.parent if setup.embedding_checkpoint else None
    return " ".join(["--nv", *(f"--bind {m.bind_arg()}" for m in setup.mounts(setup.repo_root, embedder))])


def run_command(command: Sequence[str], cwd: Path) -> int:
    """Run one TAO action, its stdout and stderr copied line by line into ``sys.stdout``: the rule
    log, which rulekit puts there at the Python level (a child started without ``stdout=`` would
    write to Snakemake's own stream, and a TAO traceback would miss the log Snakemake points to)."""
    if shutil.which(command[0]) is None:
        hint = ("install docker, or use tao.runtime: apptainer" if command[0] == "docker" else
                "with tao.runtime apptainer the model rules must run inside tao.image: start snakemake with "
                "--sdm apptainer --apptainer-args \"<the pre-flight's bind line>\"")
        raise InputError(f"`{command[0]}` is not on PATH in this job: {hint}")
    print("$ " + " ".join(command), flush=True)
    with subprocess.Popen(list(command), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", bufsize=1) as process:
        for line in process.stdout:
            sys.stdout.write(line)
        sys.stdout.flush()
    return process.returncode


# ---- host checks (the pre-flight) ------------------------------------------------------------------
def apptainer_binary() -> str | None:
    return shutil.which("apptainer") or shutil.which("singularity")


def snakemake_image_cache(run_dir: Path, uri: str) -> Path:
    """Where Snakemake keeps a pulled ``docker://`` image: <workdir>/.snakemake/singularity/<md5(uri)>.simg
    (its default --apptainer-prefix; the run directory is the working directory)."""
    digest = hashlib.md5(uri.encode(), usedforsecurity=False).hexdigest()
    return Path(run_dir) / ".snakemake" / "singularity" / f"{digest}.simg"


def image_status(setup: TaoSetup) -> tuple[bool, str]:
    """(present, one line): is ``tao.image`` on this host for its runtime."""
    if not setup.image:
        return False, "tao.image: MISSING (not set): set it to the TAO PyTorch image"
    if setup.runtime == "docker":
        if shutil.which("docker") is None:
            return False, f"{setup.image}: MISSING (docker is not installed on this host)"
        found = _succeeds(["docker", "image", "inspect", setup.image])
        return found, f"{setup.image}: " + ("PRESENT (docker image inspect)" if found else
                                             f"MISSING (docker pull {setup.image}; nvcr.io needs "
                                             "`docker login nvcr.io` with NGC_API_KEY)")
    binary = apptainer_binary()
    if binary is None:
        return False, f"{setup.image}: MISSING (apptainer is not installed on this host)"
    local = Path(setup.image) if "://" not in setup.image else snakemake_image_cache(setup.run_dir, setup.image)
    found = local.is_file() and _succeeds([binary, "inspect", str(local)])
    if found:
        return True, f"{setup.image}: PRESENT ({binary} inspect {local})"
    fix = (f"apptainer pull tao.sif {setup.image}, then set tao.image to that .sif" if "://" in setup.image
           else "the file does not exist or is not an image")
    return False, f"{setup.image}: MISSING ({fix})"


def _succeeds(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def detected_gpu_memory_gb() -> float | None:
    """The smallest GPU's memory on this host (nvidia-smi), or None when there is none to ask."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        sizes = [float(line) / 1024 for line in out.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return min(sizes) if sizes else None
