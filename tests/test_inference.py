"""Inference CSV, embeddings export, their CLI, and the trainer backend interface."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aoideft import csvdata, inference, progress, registration
from aoideft.backend import EmbeddedBackend, get_backend
from aoideft.checkpoint import save_checkpoint
from aoideft.errors import InputError
from aoideft.model import ChangeNetLite, ModelArch, defect_scores
from test_trainer import LIGHTS, make_spec, write_pairs_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infer")
    data = write_pairs_dataset(root, {"train": (12, 6), "val": (8, 4)})
    # A metadata column whose text pandas would otherwise turn into numbers or NaN.
    frame = pd.read_csv(data["val"], dtype=str)
    frame["number_of_pins"] = ["007", "", "NA", "2"] * 3
    frame.to_csv(data["val"], index=False)
    arch = ModelArch(lights=LIGHTS, image_ext=".png", image_width=32, image_height=32, learnable_difference_modules=3)
    torch.manual_seed(0)
    model = ChangeNetLite(arch).eval()
    data["checkpoint"] = root / "model.pth"
    save_checkpoint(data["checkpoint"], model, epoch=0, step=0, metrics={})
    return data


def _expected(workspace: dict[str, Path], output: str) -> torch.Tensor:
    """What the checkpoint's model gives on the val CSV, computed without inference.py's file handling."""
    from aoideft.checkpoint import build_model_from_checkpoint

    model = build_model_from_checkpoint(workspace["checkpoint"])
    _, decoded = inference.decode_for_arch(model.arch, workspace["val"], workspace["images_dir"])
    with torch.no_grad():
        if output == "scores":
            return defect_scores(model(decoded.golden, decoded.test))
        return model.embed(decoded.golden, decoded.test)


def test_inference_csv_is_input_plus_scores(workspace, tmp_path):
    out = tmp_path / "inference.csv"
    returned = inference.run_inference(
        workspace["checkpoint"], workspace["val"], workspace["images_dir"], out, batch_size=5, device="cpu"
    )
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    original = pd.read_csv(workspace["val"], dtype=str, keep_default_na=False)
    assert list(written.columns) == [*original.columns, "siamese_score"]
    pd.testing.assert_frame_equal(written[original.columns], original)
    assert written["number_of_pins"].tolist()[:4] == ["007", "", "NA", "2"]
    scores = written["siamese_score"].astype(float).to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_allclose(scores, _expected(workspace, "scores").numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returned["siamese_score"].to_numpy(), scores, rtol=1e-6)


def test_embeddings_and_keys_sidecar(workspace, tmp_path):
    out = tmp_path / "emb" / "val.npy"
    inference.export_embeddings(workspace["checkpoint"], workspace["val"], workspace["images_dir"], out, device="cpu")
    vectors = np.load(out)
    assert vectors.dtype == np.float32 and vectors.shape == (12, 128)  # mean + max pool of 4 x base width 16
    np.testing.assert_allclose(vectors, _expected(workspace, "embedding").numpy(), rtol=1e-4, atol=1e-5)

    keys_path = csvdata.embedding_keys_path(out)
    assert keys_path == tmp_path / "emb" / "val.keys.csv"
    keys = pd.read_csv(keys_path, dtype=str, keep_default_na=False)
    original = pd.read_csv(workspace["val"], dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(keys, original[["input_path", "object_name", "label"]])


def test_cli_infer_and_embed(workspace, tmp_path, capsys):
    common = ["--checkpoint", str(workspace["checkpoint"]), "--csv", str(workspace["val"]),
              "--images-dir", str(workspace["images_dir"]), "--device", "cpu"]
    assert inference.infer_main([*common, "--out", str(tmp_path / "i.csv")]) == 0
    assert "siamese_score" in pd.read_csv(tmp_path / "i.csv").columns
    assert inference.main(["embed", *common, "--out", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape[0] == 12 and (tmp_path / "e.keys.csv").is_file()
    capsys.readouterr()

    missing = ["--checkpoint", str(tmp_path / "none.pth"), *common[2:], "--out", str(tmp_path / "x.csv")]
    assert inference.infer_main(missing) == 2
    assert "none.pth does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_decoding_inference_and_embedding_log_timestamped_progress(workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_EVERY", 4)  # 12 rows: a line at 4 and 8 of them
    inference.run_inference(workspace["checkpoint"], workspace["val"], workspace["images_dir"], tmp_path / "i.csv",
                            batch_size=5, device="cpu")
    inference.export_embeddings(workspace["checkpoint"], workspace["val"], workspace["images_dir"],
                                tmp_path / "e.npy", batch_size=5, device="cpu", scores_csv=tmp_path / "s.csv")
    lines = capsys.readouterr().out.splitlines()
    assert all(re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ", line) for line in lines)
    source = str(workspace["val"])
    for step in (f"decoding {source}", f"inference {source}", f"embedding + scores {source}"):
        mine = [line.split("] ", 1)[1] for line in lines if line.split("] ", 1)[1].startswith(step + ":")]
        assert mine[0].startswith(f"{step}: 12 rows") and mine[-1].startswith(f"{step}: done, 12 rows in ")
        if not step.startswith("decoding"):  # batches of 5 rows: 5 and 10 rows cross 4 and 8
            assert [line.split(" in ")[0] for line in mine[1:-1]] == [f"{step}: 5/12 rows (42%)",
                                                                      f"{step}: 10/12 rows (83%)"]
    assert len([line for line in lines if "decoding" in line and "done" in line]) == 2


def test_the_embedding_pass_writes_the_very_scores_of_an_inference_pass(workspace, tmp_path):
    """What lets the loop's jobs score and embed in one pass (SDG verification, the pool) unchanged."""
    alone = inference.run_inference(workspace["checkpoint"], workspace["val"], workspace["images_dir"],
                                    tmp_path / "i.csv", batch_size=5, device="cpu")
    vectors = inference.export_embeddings(workspace["checkpoint"], workspace["val"], workspace["images_dir"],
                                          tmp_path / "e.npy", batch_size=5, device="cpu", scores_csv=tmp_path / "s.csv")
    together = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    assert vectors.shape[0] == len(alone) == len(together)
    assert together.equals(pd.read_csv(tmp_path / "i.csv", dtype=str, keep_default_na=False))


def test_checkpoint_lights_must_exist_in_images(workspace, tmp_path):
    arch = ModelArch(lights=("WhiteLight",), image_ext=".png", image_width=32, image_height=32)
    save_checkpoint(tmp_path / "white.pth", ChangeNetLite(arch), epoch=0, step=0, metrics={})
    with pytest.raises(InputError, match="WhiteLight"):
        inference.run_inference(tmp_path / "white.pth", workspace["val"], workspace["images_dir"], tmp_path / "o.csv")


def test_phase_alignment_registers_goldens_once_per_csv_and_the_checkpoint_carries_it(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    rows = []
    for index, (dy, dx) in enumerate([(1.5, -1.0), (0.0, 0.0), (-2.0, 0.5)]):
        scene = torch.from_numpy(rng.uniform(0, 255, (1, 3, 48, 48)).astype(np.float32))
        scene = torch.nn.functional.avg_pool2d(scene, 3, stride=1, padding=1)
        test = scene[..., 8:40, 8:40]
        golden = registration.shift_images(scene, torch.tensor([[-dy, -dx]]))[..., 8:40, 8:40]
        for folder, image in (("test", test), ("golden", golden)):
            path = images / folder / f"p{index}_SolderLight.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()).save(path)
        rows.append({"input_path": "test", "golden_path": "golden", "label": "PASS" if index else "MISSING",
                     "object_name": f"p{index}"})
    csv_path = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(csv_path, index=False)
    plain = ModelArch(lights=("SolderLight",), image_ext=".png", image_width=32, image_height=32)
    aligned = ModelArch(**{**plain.__dict__, "align": "phase"})
    _, raw = inference.decode_for_arch(plain, csv_path, images)
    _, registered = inference.decode_for_arch(aligned, csv_path, images)
    assert raw.shifts is None and torch.equal(registered.test, raw.test)
    assert torch.allclose(registered.shifts, torch.tensor([[1.5, -1.0], [0.0, 0.0], [-2.0, 0.5]]), atol=0.1)
    inner = (Ellipsis, slice(4, -4), slice(4, -4))
    def error(pairs):
        return (pairs.golden.float() - pairs.test.float())[inner].abs().mean()

    assert error(registered) < 0.3 * error(raw)
    # inference rebuilds the arch from the checkpoint, so it registers the goldens the same way
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "aligned.pth", ChangeNetLite(aligned).eval(), epoch=0, step=0, metrics={})
    scored = inference.run_inference(tmp_path / "aligned.pth", csv_path, images, tmp_path / "o.csv")
    model = inference.build_model_from_checkpoint(tmp_path / "aligned.pth")
    with torch.no_grad():
        expected = defect_scores(model(registered.golden, registered.test)).numpy()
    assert np.allclose(scored[inference.SCORE_COLUMN].to_numpy(), expected, atol=1e-6)


def test_embedded_backend_trains_infers_and_embeds(workspace, tmp_path):
    backend = get_backend("embedded", device="cpu", threads=1, verbose=False)
    assert isinstance(backend, EmbeddedBackend) and backend.name == "embedded"
    summary = backend.train(make_spec(workspace, num_epochs=1), tmp_path / "train")
    assert summary["epochs_run"] == 1 and (tmp_path / "train" / summary["checkpoints"]["best_val"]).is_file()

    best = tmp_path / "train" / "best_val.pth"
    out_csv = backend.infer(best, workspace["val"], workspace["images_dir"], tmp_path / "inference.csv")
    assert out_csv == tmp_path / "inference.csv" and len(pd.read_csv(out_csv)) == 12
    out_npy = backend.embed(best, workspace["val"], workspace["images_dir"], tmp_path / "val.npy")
    assert np.load(out_npy).shape == (12, 128)


def test_backend_choice_and_options_are_checked():
    with pytest.raises(InputError, match="'tao' needs setup= and architecture_spec="):
        get_backend("tao")
    with pytest.raises(InputError, match="unknown trainer backend"):
        get_backend("keras")
    with pytest.raises(InputError, match="unknown trainer options \\['widht'\\]"):
        get_backend("embedded", widht=8)
