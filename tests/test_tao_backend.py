"""The TAO backend without TAO: command lines and mounts, job specs against TAO's schemas, TAO's
output formats read back, the backend's train/infer/embed with a fake TAO, and the pre-flight.

TAO-format fixtures below are written from NVIDIA's tao_pytorch_backend sources (status logger in
core/loggers/api_logging.py and core/callbacks/loggers.py, checkpoint names in
core/callbacks/model_checkpoint.py, inference.csv in visual_changenet/classification/models/
cn_pl_model.py), not captured from a TAO run: no TAO image exists here.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from aoideft import fsutil, spec as tao_spec, spec_settings
from aoideft.backend import TaoBackend, get_backend
from aoideft.checkpoint import epoch_and_step, save_checkpoint
from aoideft.errors import InputError
from aoideft.model import ChangeNetLite, ModelArch
from aoideft.tao import outputs, preflight, runtime, specs
from conftest import REPO, SNAKEMAKE, tiny_config
from test_trainer import LIGHTS, make_spec, write_pairs_dataset

BASELINE = Path(__file__).parent / "data" / "tao_baseline_spec.yaml"
RADIO = "c_radio_v2_vit_base_patch16_224"


def setup_for(tmp_path: Path, runtime_name: str = "docker", **changes) -> runtime.TaoSetup:
    (tmp_path / "ws" / "images").mkdir(parents=True, exist_ok=True)
    (tmp_path / "pool_images").mkdir(exist_ok=True)
    backbone = tmp_path / "weights" / "C-RADIOv2_B.pth"
    backbone.parent.mkdir(exist_ok=True)
    backbone.write_bytes(b"weights")
    values = dict(runtime=runtime_name, image="nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt", pretrained_backbone=backbone,
                  embedding_checkpoint=None, gpu_memory_gb=48.0, docker_args=("--shm-size", "16g"),
                  run_dir=tmp_path / "run", read_only_roots=(tmp_path / "ws", tmp_path / "ws" / "images",
                                                             tmp_path / "pool_images", tmp_path / "absent"))
    return runtime.TaoSetup(**{**values, **changes})


# ---- command lines and mounts --------------------------------------------------------------------
def test_docker_command_mounts_every_input_in_place(tmp_path):
    setup = setup_for(tmp_path)
    spec_file = tmp_path / "run" / "rec0" / "train" / "tao_train_spec.yaml"
    command = runtime.docker_command(setup, "train", spec_file, spec_file.parent, gpu="3", user="1000:1000")
    run, ws = str(tmp_path / "run"), str(tmp_path / "ws")
    assert command == [
        "docker", "run", "--rm", "--ipc=host", "--user", "1000:1000", "--gpus", "device=3",
        "-v", f"{run}:{run}", "-v", f"{tmp_path / 'pool_images'}:{tmp_path / 'pool_images'}:ro",
        "-v", f"{tmp_path / 'weights'}:{tmp_path / 'weights'}:ro", "-v", f"{ws}:{ws}:ro",
        "-w", str(spec_file.parent), "--shm-size", "16g", "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt",
        "visual_changenet", "train", "-e", str(spec_file)]
    # images/ inside the workspace is covered by the workspace mount; an absent root is not mounted
    with pytest.raises(InputError, match="outside every directory mounted"):
        runtime.docker_command(setup, "train", tmp_path / "elsewhere" / "s.yaml", spec_file.parent,
                               gpu=None, user="0:0")


def test_launch_follows_the_job_gpu_and_runtime(tmp_path, monkeypatch):
    spec_file = tmp_path / "run" / "x" / "s.yaml"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    docker = runtime.launch_command(setup_for(tmp_path), "inference", spec_file, spec_file.parent)
    assert docker[docker.index("--gpus") + 1] == "device=1" and docker[-4:] == ["visual_changenet", "inference", "-e",
                                                                                str(spec_file)]
    # apptainer: Snakemake's container: already put the job in the TAO image; TAO runs directly
    apptainer = setup_for(tmp_path, "apptainer", image="docker://nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt",
                          repo_root=REPO)
    assert runtime.launch_command(apptainer, "train", spec_file, spec_file.parent) == [
        "visual_changenet", "train", "-e", str(spec_file)]
    binds = runtime.bind_args(apptainer)
    assert binds.startswith("--nv --bind ") and f"--bind {tmp_path / 'ws'}:{tmp_path / 'ws'}:ro" in binds
    assert f"--bind {tmp_path / 'run'}:{tmp_path / 'run'} " in binds + " " and f"--bind {REPO}:{REPO}:ro" in binds


def test_nested_mounts_keep_each_mode(tmp_path):
    ws = tmp_path / "ws"
    mounts = runtime.job_mounts(ws / "results" / "run", [ws, ws / "images", ws / "results" / "run" / "ro_inside"])
    # the run directory inside a read-only workspace is mounted read-write on top; what lies inside
    # a mount at least as permissive is covered by it
    assert [(m.path, m.read_only) for m in mounts] == [(ws.resolve(), True),
                                                       ((ws / "results" / "run").resolve(), False)]


def test_image_uris_take_each_runtime_form(tmp_path):
    assert runtime.resolve_image("docker://nvcr.io/n/tao:1-pyt", "docker", tmp_path) == "nvcr.io/n/tao:1-pyt"
    assert runtime.resolve_image("nvcr.io/n/tao:1-pyt", "apptainer", tmp_path) == "docker://nvcr.io/n/tao:1-pyt"
    assert runtime.resolve_image("images/tao.sif", "apptainer", tmp_path) == str(tmp_path / "images" / "tao.sif")
    assert runtime.resolve_image(None, "docker", tmp_path) is None


# ---- job specs against TAO's schemas --------------------------------------------------------------
def test_tao_job_specs_validate_against_each_action_schema_and_round_trip(tmp_path):
    baseline = tao_spec.load_spec(BASELINE)  # TAO's file, unchanged
    with pytest.raises(InputError, match="unknown spec key 'evaluate'"):
        tao_spec.validate_spec(baseline, "baseline", action="train")  # the per-action check is strict
    backbone = tmp_path / "C-RADIOv2_B.pth"
    train = specs.train_spec(baseline, tmp_path / "rec0", backbone=backbone, pretrained=tmp_path / "prev.pth")
    inference = specs.inference_spec(baseline, tmp_path / "inf", checkpoint=tmp_path / "m.pth",
                                     csv_path=tmp_path / "kpi.csv", images_dir=tmp_path / "images", backbone=backbone)
    for action, job in (("train", train), ("inference", inference)):
        tao_spec.validate_spec(job, action, action=action)
        path = tmp_path / f"{action}.yaml"
        fsutil.write_yaml(path, job)
        assert tao_spec.load_spec(path) == job  # what TAO reads is what was checked
    assert set(train) == set(baseline) - {"evaluate", "inference", "export"}
    assert "inference" in inference and "evaluate" not in inference and "train" in inference
    assert (train["results_dir"], train["train"]["results_dir"]) == (str(tmp_path / "rec0"),) * 2
    assert train["train"]["pretrained_model_path"] == str(tmp_path / "prev.pth")
    assert train["model"]["backbone"]["pretrained_backbone_path"] == str(backbone)
    assert (train["train"]["num_gpus"], train["train"]["gpu_ids"]) == (1, [0])
    assert inference["inference"]["checkpoint"] == str(tmp_path / "m.pth")
    assert inference["dataset"]["classify"]["infer_dataset"] == {"csv_path": str(tmp_path / "kpi.csv"),
                                                                 "images_dir": str(tmp_path / "images")}
    # everything the job does not decide reaches TAO as the user wrote it
    decided = ("results_dir", "train.results_dir", "train.num_gpus", "train.gpu_ids", "train.num_nodes",
               "train.pretrained_model_path", "train.resume_training_checkpoint_path", specs.BACKBONE_KEY)
    original, written = tao_spec.flatten_spec(baseline), tao_spec.flatten_spec(train)
    for key, value in original.items():
        if key in tao_spec.schema_properties("train") and key not in decided:
            assert written[key] == value, key


def test_a_bad_value_in_a_job_spec_names_the_action(tmp_path):
    spec = tao_spec.with_overrides(tao_spec.load_spec(BASELINE), {"dataset.classify.batch_size": 0})
    with pytest.raises(InputError, match=r"TAO train spec\): spec key 'dataset.classify.batch_size'"):
        specs.train_spec(spec, tmp_path, backbone=None)
    with pytest.raises(InputError, match="task: classify"):
        specs.train_spec({**tao_spec.load_spec(BASELINE), "task": "segment"}, tmp_path, backbone=None)


# ---- TAO's outputs read back ----------------------------------------------------------------------
def _status_line(message: str, status: str = "RUNNING", **extra) -> str:
    return json.dumps({**extra, "date": "11/26/2026", "time": "08:00:00", "status": status, "verbosity": "INFO",
                       "message": message})


def tao_train_status(epochs: int, validate_every: int) -> str:
    """A classify training's status.json as TAO's status logger writes it (the kpi repeats on later lines)."""
    lines, kpi = [_status_line("Starting Training Loop.", "STARTED")], None
    for epoch in range(epochs):
        if (epoch + 1) % validate_every == 0:
            kpi = {"val_loss": 0.5 - 0.1 * epoch, "val_acc": 0.8, "val_fpr": 0.1}
            lines.append(_status_line("Eval metrics generated.", kpi=kpi))
        lines.append(_status_line("Training loop in progress", epoch=epoch + 1, max_epoch=epochs, kpi=kpi,
                                  time_per_epoch="0:00:10", eta="0:00:10"))
        kpi = {"train_loss": 0.7 - 0.1 * epoch, "train_acc": 0.6, "train_fpr": 0.3}
        lines.append(_status_line("Train metrics generated.", kpi=kpi))
    lines.append(_status_line("Training loop complete.", kpi=kpi))
    lines.append(_status_line("Train finished successfully.", "SUCCESS", kpi=kpi))
    return "\n".join(lines) + "\n"


def test_status_json_becomes_one_row_per_epoch(tmp_path):
    (tmp_path / "status.json").write_text(tao_train_status(epochs=3, validate_every=2) + '{"cut off')
    records = outputs.read_status(tmp_path / "status.json")
    history = outputs.epoch_history(records)
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert history[0] == {"epoch": 0, "loss": 0.7, "accuracy": 0.6, "tao_train_fpr": 0.3}
    assert history[1]["val_loss"] == pytest.approx(0.4) and history[1]["tao_val_fpr"] == 0.1
    assert "val_loss" not in history[2]  # a repeated kpi is not a new validation
    assert outputs.epochs_counted(records) == 3 and outputs.final_status(records)[0] == "SUCCESS"


def test_checkpoints_are_found_by_tao_name_without_the_latest_link(tmp_path):
    for name in ("model_epoch_004_step_00050.pth", "model_epoch_009_step_00100.pth", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "changenet_model_classify_latest.pth").symlink_to(tmp_path / "model_epoch_009_step_00100.pth")
    (tmp_path / "model_epoch_010_step_00110.pth").symlink_to(tmp_path / "notes.txt")
    found = outputs.find_checkpoints(tmp_path)
    assert [(c.path.name, c.epoch, c.step) for c in found] == [("model_epoch_004_step_00050.pth", 4, 50),
                                                               ("model_epoch_009_step_00100.pth", 9, 100)]
    assert epoch_and_step(tmp_path / "model_epoch_009_step_00100.pth") == (9, 100)


def test_tao_inference_csv_becomes_the_embedded_backends_file(tmp_path):
    rows = pd.DataFrame({"input_path": ["t/a", "t/b"], "golden_path": ["g/a", "g/b"], "label": ["PASS", "MISSING"],
                         "object_name": ["007", "8"], "number_of_pins": ["", "NA"]})
    tao_csv = tmp_path / "inference.csv"
    tao = rows.copy()
    tao["object_name"] = ["8", "7"]
    tao["siamese_score"] = [0.1, 0.9]
    tao.to_csv(tao_csv, index=False)
    with pytest.raises(outputs.TaoRunError, match="row 1: object_name '8' does not match the input CSV's '007'"):
        outputs.attach_scores(rows, tao_csv, tmp_path / "out.csv")
    tao["object_name"] = [7, 8]  # TAO's pandas read the names as numbers: the same rows
    tao.to_csv(tao_csv, index=False)
    out = outputs.attach_scores(rows, tao_csv, tmp_path / "out.csv")
    written = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(written.columns) == [*rows.columns, "siamese_score"]
    assert written["number_of_pins"].tolist() == ["", "NA"]
    assert out["siamese_score"].tolist() == [0.1, 0.9]
    tao.iloc[:1].to_csv(tao_csv, index=False)
    with pytest.raises(outputs.TaoRunError, match="1 rows but its input CSV has 2"):
        outputs.attach_scores(rows, tao_csv, tmp_path / "out.csv")


# ---- the backend with a fake TAO --------------------------------------------------------------------
class FakeTao:
    """Does what `visual_changenet train|inference -e SPEC` does to the files, from the spec alone."""

    def __init__(self, fail: str | None = None):
        self.commands: list[list[str]] = []
        self.fail = fail

    def __call__(self, command, cwd: Path) -> int:
        self.commands.append(list(command))
        action, spec = command[-3], yaml.safe_load(Path(command[-1]).read_text())
        results = Path(spec["results_dir"])
        if action == self.fail:
            (results / "status.json").write_text(_status_line("Execution status: FAIL", "FAILURE") + "\n")
            return 1
        if action == "train":
            epochs = spec["train"]["num_epochs"]
            (results / "status.json").write_text(tao_train_status(epochs, spec["train"]["validation_interval"]))
            for epoch in range(spec["train"]["checkpoint_interval"] - 1, epochs, spec["train"]["checkpoint_interval"]):
                (results / f"model_epoch_{epoch:03d}_step_{(epoch + 1) * 3:05d}.pth").write_bytes(b"tao weights")
            (results / "changenet_model_classify_latest.pth").symlink_to(results / f"model_epoch_{epochs - 1:03d}_step_"
                                                                        f"{epochs * 3:05d}.pth")
        else:
            frame = pd.read_csv(spec["dataset"]["classify"]["infer_dataset"]["csv_path"], dtype=str)
            defect = (frame["label"] != "PASS").to_numpy()
            late = "epoch_002" in spec["inference"]["checkpoint"]  # the later checkpoint separates the classes
            noise = np.linspace(0.0, 0.3, len(frame))
            frame["siamese_score"] = np.where(defect, 0.6 + noise / 3, noise if late else 0.7 - noise)
            frame.to_csv(results / "inference.csv", index=False)
            (results / "status.json").write_text(_status_line("Inference finished", "SUCCESS") + "\n")
        return 0


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tao")
    data = write_pairs_dataset(root, {"train": (6, 4), "val": (6, 4)})
    arch = ModelArch(lights=LIGHTS, image_ext=".png", image_width=32, image_height=32, learnable_difference_modules=2)
    data["embedder"] = root / "embedder.pth"
    save_checkpoint(data["embedder"], ChangeNetLite(arch), epoch=0, step=0, metrics={})
    return data


def test_tao_backend_writes_what_the_embedded_backend_writes(pairs, tmp_path):
    fake = FakeTao()
    spec = make_spec(pairs, num_epochs=3, validation_interval=2)
    arch_spec = tmp_path / "run" / "specs" / "baseline_spec_automl.yaml"
    fsutil.write_yaml(arch_spec, spec)
    backend = get_backend("tao", setup=setup_for(tmp_path, embedding_checkpoint=pairs["embedder"]),
                          architecture_spec=arch_spec, device="cpu", runner=fake)
    assert isinstance(backend, TaoBackend) and backend.name == "tao"
    results = tmp_path / "run" / "rec0" / "train"
    summary = backend.train(spec, results, pretrained=tmp_path / "prev.pth")

    assert [c[c.index("visual_changenet") + 1] for c in fake.commands] == ["train"] + ["inference"] * 3
    assert summary["checkpoints"] == {"best_val": "model_epoch_002_step_00009.pth",
                                      "latest": "model_epoch_002_step_00009.pth",
                                      "epochs": [f"model_epoch_00{e}_step_0000{3 * (e + 1)}.pth" for e in range(3)]}
    assert summary["best_val_far_pct"] == 0.0 and summary["epochs_run"] == 3 and not summary["collapsed"]
    assert summary["best_val_loss"] is None and summary["pretrained"] == str(tmp_path / "prev.pth")
    assert fsutil.read_json(results / "train_summary.json") == json.loads(json.dumps(summary))
    history = [json.loads(line) for line in (results / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [0, 1, 2] and history[1]["val_loss"] == pytest.approx(0.4)
    assert history[0]["val_far_pct"] > 0.0 and history[2]["val_far_pct"] == 0.0
    written = yaml.safe_load((results / "tao_train_spec.yaml").read_text())
    assert written["train"]["pretrained_model_path"] == str(tmp_path / "prev.pth")

    checkpoint = results / summary["checkpoints"]["best_val"]
    out_csv = backend.infer(checkpoint, pairs["val"], pairs["images_dir"], tmp_path / "run" / "kpi" / "inference.csv")
    scored = pd.read_csv(out_csv, dtype=str, keep_default_na=False)
    original = pd.read_csv(pairs["val"], dtype=str, keep_default_na=False)
    assert list(scored.columns) == [*original.columns, "siamese_score"] and len(scored) == len(original)
    infer_spec = yaml.safe_load((tmp_path / "run" / "kpi" / "tao_inference" / "tao_inference_spec.yaml").read_text())
    assert infer_spec["inference"]["checkpoint"] == str(checkpoint)

    out_npy = backend.embed(checkpoint, pairs["val"], pairs["images_dir"], tmp_path / "run" / "kpi" / "kpi.npy")
    assert np.load(out_npy).shape[0] == len(original) and len(fake.commands) == 5  # ours, not TAO's


def test_a_failed_tao_action_stops_with_its_files_named(pairs, tmp_path):
    backend = TaoBackend(setup_for(tmp_path), tmp_path / "absent.yaml", runner=FakeTao(fail="train"))
    with pytest.raises(outputs.TaoRunError, match=r"TAO train failed \(exit code 1, status FAILURE: Execution status"):
        backend.train(make_spec(pairs), tmp_path / "run" / "t")
    with pytest.raises(InputError, match="absent.yaml does not exist"):
        backend.infer(tmp_path / "m.pth", pairs["val"], pairs["images_dir"], tmp_path / "run" / "o.csv")
    with pytest.raises(InputError, match="tao.embedding_checkpoint is not set"):
        backend.embed(tmp_path / "m.pth", pairs["val"], pairs["images_dir"], tmp_path / "run" / "o.npy")
    with pytest.raises(InputError, match="needs setup= and architecture_spec="):
        get_backend("tao")


# ---- pre-flight ------------------------------------------------------------------------------------
def test_batch_size_rule():
    assert [specs.max_batch_size(RADIO, 224, 224, gb) for gb in (80, 48, 47.5, 24, 16)] == [16, 16, 8, 8, 0]
    assert specs.max_batch_size(RADIO, 448, 448, 48) is None
    assert specs.max_batch_size("vit_base_dinov3", 224, 224, 48) is None


def test_image_presence_per_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "bin").mkdir()
    assert runtime.image_status(setup_for(tmp_path)) == (
        False, "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt: MISSING (docker is not installed on this host)")
    docker = tmp_path / "bin" / "docker"
    docker.write_text('#!/bin/sh\n[ "$3" = "nvcr.io/here:1" ] && exit 0\nexit 1\n')
    docker.chmod(0o755)
    assert runtime.image_status(setup_for(tmp_path, image="nvcr.io/here:1"))[0]
    present, line = runtime.image_status(setup_for(tmp_path))
    assert not present and "MISSING (docker pull nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt; nvcr.io needs" in line
    apptainer = tmp_path / "bin" / "apptainer"
    apptainer.write_text("#!/bin/sh\nexit 0\n")
    apptainer.chmod(0o755)
    uri = "docker://nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt"
    assert not runtime.image_status(setup_for(tmp_path, "apptainer", image=uri))[0]
    cached = runtime.snakemake_image_cache(tmp_path / "run", uri)  # where Snakemake's own pull puts it
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"sif")
    assert runtime.image_status(setup_for(tmp_path, "apptainer", image=uri))[0]


def test_preflight_names_each_missing_piece(pairs, tmp_path, monkeypatch):
    spec = make_spec(pairs)
    pinned = {"model.backbone.type": RADIO, "dataset.classify.image_width": 224, "dataset.classify.image_height": 224,
              "dataset.classify.batch_size": 16}
    monkeypatch.setattr(runtime, "image_status", lambda setup: (True, f"{setup.image}: PRESENT"))
    ready = preflight.check(setup_for(tmp_path, embedding_checkpoint=pairs["embedder"], gpu_memory_gb=48.0),
                            spec=spec, pinned=pinned, batch_search_max=None, apptainer_enabled=None)
    assert ready.problems == []
    assert any(line.startswith("batch size 16 <= 16 for c_radio") for line in ready.lines)
    assert any(line.startswith("NGC_API_KEY: ") for line in ready.lines)
    monkeypatch.undo()
    small = preflight.check(setup_for(tmp_path, "apptainer", image="/nowhere/tao.sif", pretrained_backbone=None,
                                      embedding_checkpoint=tmp_path / "none.pth", gpu_memory_gb=24.0),
                            spec=spec, pinned=pinned, batch_search_max=32, apptainer_enabled=False)
    text = "; ".join(small.problems)
    assert "/nowhere/tao.sif: MISSING" in text and "start snakemake with --sdm apptainer" in text
    assert "pretrained backbone: not set" in text and "none.pth: MISSING" in text
    assert f"batch size 32 is too large for {RADIO} at 224x224 on 24 GB (tao.gpu_memory_gb): at most 8" in text
    with pytest.raises(InputError, match="^TAO backend not ready: "):
        small.require()
    other = preflight.check(setup_for(tmp_path, embedding_checkpoint=pairs["embedder"]), spec=spec, pinned={},
                            batch_search_max=None, apptainer_enabled=None)
    assert any("no documented GPU-memory rule" in line for line in other.lines)


def _fake_docker(bin_dir: Path) -> None:
    """A `docker` that has every image (for `docker image inspect`) and runs nothing else."""
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text('#!/bin/sh\n[ "$1 $2" = "image inspect" ] && exit 0\nexit 1\n')
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)


def _dry_run(config: dict, tmp_path: Path, *args: str, path_prefix: str = "") -> subprocess.CompletedProcess:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": path_prefix + os.environ["PATH"]}
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "-n", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def test_the_smoke_config_lists_what_is_missing_here(tmp_path):
    config = yaml.safe_load((REPO / "config" / "tao_smoke.yaml").read_text())
    config.update(run_dir=str(tmp_path / "run"), workspace=str(tmp_path / "ws"))
    proc = _dry_run(config, tmp_path, "--sdm", "apptainer")
    assert proc.returncode != 0
    failed = [line for line in proc.stderr.splitlines() if line.startswith("PRE-FLIGHT FAILED:")]
    assert len(failed) == 1, proc.stderr[-3000:]
    assert failed[0].startswith("PRE-FLIGHT FAILED: TAO backend not ready: image docker://nvcr.io/nvidia/tao/")
    no_apptainer = not runtime.apptainer_binary()
    image_missing = "MISSING (apptainer is not installed on this host)" if no_apptainer else ": MISSING"
    for missing in (image_missing,
                    "pretrained backbone /data/pretrained_models/C-RADIOv2_B.pth: MISSING",
                    "tao_smoke_embedder/best_val.pth: MISSING (tao.embedding_checkpoint)"):
        assert missing in failed[0]
    assert not (tmp_path / "run" / "preflight").exists() and not (tmp_path / "ws").exists()


def test_a_ready_tao_setup_passes_the_preflight_and_plans_the_run(tmp_path, tiny_workspace):
    _fake_docker(tmp_path / "bin")
    (tmp_path / "C-RADIOv2_B.pth").write_bytes(b"weights")
    settings = spec_settings.train_settings(tao_spec.load_spec(tiny_workspace / "specs" / "baseline_spec.yaml"))
    arch = ModelArch(lights=settings.lights, image_ext=settings.image_ext, image_width=32, image_height=32)
    save_checkpoint(tmp_path / "embedder.pth", ChangeNetLite(arch), epoch=0, step=0, metrics={})
    config = tiny_config(tiny_workspace, tmp_path / "run", backend="tao")
    config["tao"] = {"runtime": "docker", "image": "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt",
                     "pretrained_backbone": str(tmp_path / "C-RADIOv2_B.pth"),
                     "embedding_checkpoint": str(tmp_path / "embedder.pth"), "gpu_memory_gb": 24}
    config["automl"]["pinned"].update({"model.backbone.type": RADIO, "dataset.classify.image_width": 224,
                                       "dataset.classify.image_height": 224, "dataset.classify.batch_size": 8})
    proc = _dry_run(config, tmp_path, path_prefix=f"{tmp_path / 'bin'}:")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt: PRESENT (docker image inspect)" in proc.stderr
    assert f"batch size 8 <= 8 for {RADIO} at 224x224 on 24 GB (tao.gpu_memory_gb)" in proc.stderr
    assert "rule automl_train:" in proc.stdout + proc.stderr
    config["automl"]["pinned"]["dataset.classify.batch_size"] = 16
    refused = _dry_run(config, tmp_path, path_prefix=f"{tmp_path / 'bin'}:")
    assert refused.returncode != 0 and "batch size 16 is too large" in refused.stderr


def test_taos_baseline_spec_is_accepted_unchanged_as_the_workspace_spec(tmp_path, tiny_workspace):
    from aoideft.workflow import preflight as workflow_preflight, settings as run_settings

    workspace = tmp_path / "ws"
    shutil.copytree(tiny_workspace, workspace)
    # TAO's file (tests/data adds only a provenance comment above it)
    shutil.copyfile(BASELINE, workspace / "specs" / "baseline_spec.yaml")
    config = tiny_config(workspace, tmp_path / "run")
    validate(config, schema=str(REPO / "config" / "schemas" / "config.schema.yaml"), set_default=True)
    settings = run_settings.resolve(config, REPO)
    report = workflow_preflight.check_inputs(settings)
    assert report.lights == ("SolderLight",) and report.image_ext == ".jpg"
    summary = workflow_preflight.render_summary(settings, report)
    notes = [line.strip() for line in summary.splitlines() if line.strip().startswith("spec note: ")]
    assert len(notes) == len(set(notes)) == len(report.spec_notes) >= 10
    assert any("c_radio_v2_vit_base_patch16_224" in note for note in notes)
