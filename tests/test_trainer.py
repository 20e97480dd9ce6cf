"""Trainer: outputs, sampler, schedules, warm start, determinism and a real learning test.

``write_pairs_dataset`` (also used by test_inference.py) draws a tiny AOI data set: per object a
golden image per light (a board-coloured background with a component body and two pads) and a test
image that is the golden plus sensor noise (PASS) or plus a drawn blob (defect).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from aoideft import epoch, kpi, spec_settings, train_cli, trainer
from aoideft.augment import augment_pairs
from aoideft.checkpoint import build_model_from_checkpoint, load_checkpoint
from aoideft.errors import InputError
from aoideft.inference import predict
from aoideft.model import ChangeNetLite, ModelArch
from aoideft.spec_settings import AugmentationSettings

LIGHTS = ("SolderLight", "UniformLight")
DEFECT_LABELS = ("MISSING", "BRIDGE", "EXCESS_SOLDER")


def _golden_image(rng: np.random.Generator, size: int, light_index: int) -> np.ndarray:
    board = np.array([30, 90, 40]) + 25 * light_index
    image = np.ones((size, size, 3)) * board + rng.normal(0, 4, (size, size, 3))
    top, left = rng.integers(size // 4, size // 3, 2)
    image[top : size - top, left : size - left] = np.array([60, 60, 70]) + 40 * light_index  # component body
    for pad_left in (left - 3, size - left):
        image[top + 2 : size - top - 2, max(pad_left, 0) : pad_left + 3] = 200 - 30 * light_index  # pads
    return image


def _draw_blob(rng: np.random.Generator, image: np.ndarray, light_index: int) -> None:
    size = image.shape[0]
    radius = rng.uniform(3, 5)
    cy, cx = rng.uniform(radius, size - radius, 2)
    yy, xx = np.mgrid[:size, :size]
    colour = np.array([240, 230, 120]) if light_index == 0 else np.array([20, 20, 20])
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = colour


def write_pairs_dataset(
    root: Path,
    splits: dict[str, tuple[int, int]],
    *,
    size: int = 32,
    lights: tuple[str, ...] = LIGHTS,
    seed: int = 0,
) -> dict[str, Path]:
    """Write ``{split: (num_pass, num_defect)}`` pair CSVs under ``root`` (one images dir); returns CSV paths."""
    rng = np.random.default_rng(seed)
    images_dir = root / "images"
    csvs = {}
    for split, (num_pass, num_defect) in splits.items():
        rows = []
        for index in range(num_pass + num_defect):
            is_defect = index >= num_pass
            name = f"{split}_{index:03d}"
            for light_index, light in enumerate(lights):
                golden = _golden_image(rng, size, light_index)
                test = golden + rng.normal(0, 3, golden.shape)
                if is_defect:
                    _draw_blob(rng, test, light_index)
                for folder, image in (("golden", golden), ("test", test)):
                    path = images_dir / split / folder / f"{name}_{light}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
            rows.append(
                {
                    "input_path": f"{split}/test",
                    "golden_path": f"{split}/golden",
                    "label": DEFECT_LABELS[index % len(DEFECT_LABELS)] if is_defect else "PASS",
                    "object_name": name,
                    "comp_type_1": "R0402" if index % 2 else "C0603",
                }
            )
        csvs[split] = root / f"{split}.csv"
        pd.DataFrame(rows).to_csv(csvs[split], index=False)
    csvs["images_dir"] = images_dir
    return csvs


def make_spec(data: dict[str, Path], *, lights: tuple[str, ...] = LIGHTS, size: int = 32, **train: object) -> dict:
    """A small TAO classify spec for ``write_pairs_dataset`` output; ``train`` overrides train.* keys."""
    return {
        "task": "classify",
        "train": {
            "num_epochs": 3,
            "checkpoint_interval": 1,
            "validation_interval": 1,
            "seed": 7,
            "classify": {"loss": "ce", "cls_weight": [1.0, 2.0]},
            "optim": {"lr": 3e-3, "optim": "adamw", "policy": "linear", "momentum": 0.9, "weight_decay": 0.01},
            **train,
        },
        "model": {"classify": {"difference_module": "learnable", "learnable_difference_modules": 2, "embed_dec": 16}},
        "dataset": {
            "classify": {
                "train_dataset": {"csv_path": str(data["train"]), "images_dir": str(data["images_dir"])},
                "validation_dataset": {"csv_path": str(data["val"]), "images_dir": str(data["images_dir"])},
                "image_ext": ".png",
                "batch_size": 8,
                "workers": 1,
                "fpratio_sampling": 0.5,
                "num_input": len(lights),
                "input_map": {light: index for index, light in enumerate(lights)},
                "concat_type": "linear",
                "grid_map": {"x": 2, "y": 2},
                "image_width": size,
                "image_height": size,
                "num_classes": 2,
                "augmentation_config": {"augment": False},
            }
        },
    }


OPTIONS = {"device": "cpu", "threads": 1, "verbose": False}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return write_pairs_dataset(tmp_path_factory.mktemp("pairs"), {"train": (36, 12), "val": (18, 6)})


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict]:
    """One 3-epoch run shared by the output-format tests."""
    results = tmp_path_factory.mktemp("run")
    summary = trainer.train_from_spec(make_spec(data, checkpoint_interval=2), results, options=OPTIONS)
    return results, summary


def _metrics(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "metrics.jsonl").read_text().splitlines()]


def test_writes_checkpoints_metrics_and_summary(trained):
    results, summary = trained
    # 48 rows, batch 8 -> 6 steps per epoch; checkpoint_interval 2 of 3 epochs -> epochs 1 and 2.
    names = sorted(path.name for path in results.glob("model_epoch_*.pth"))
    assert names == ["model_epoch_001_step_00012.pth", "model_epoch_002_step_00018.pth"]
    assert (results / "best_val.pth").is_file() and (results / "latest.pth").is_file()

    rows = _metrics(results)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert [row["step"] for row in rows] == [6, 12, 18]
    expected_keys = {
        "epoch", "step", "loss", "accuracy", "lr", "val_loss", "val_accuracy", "val_far_pct",
        "val_threshold", "val_selection", "val_expected_far_pct", "val_margin", "val_pred_counts",
        "train_seconds", "seconds",
    }
    for row in rows:
        assert set(row) == expected_keys
        assert sum(row["val_pred_counts"].values()) == 24 and set(row["val_pred_counts"]) == {"PASS", "NO_PASS"}
        assert 0 <= row["val_far_pct"] <= 100 and 0 <= row["accuracy"] <= 1

    on_disk = json.loads((results / "train_summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    best = min(rows, key=kpi.validation_order)  # the selection score, then val_loss
    assert summary["best_epoch"] == best["epoch"] and summary["best_val_far_pct"] == best["val_far_pct"]
    assert summary["best_val_selection"] == best["val_selection"] and summary["weight_average"] == {"ema_epochs": 1.5}
    assert summary["checkpoints"] == {"best_val": "best_val.pth", "latest": "latest.pth", "epochs": names}
    assert summary["final"] == rows[-1]
    assert summary["collapsed"] == (min(best["val_pred_counts"].values()) == 0)
    assert summary["device"] == "cpu" and summary["num_train_pairs"] == 48 and summary["pairs_per_second"] > 0
    assert load_checkpoint(results / "best_val.pth")["epoch"] == best["epoch"]
    assert load_checkpoint(results / "latest.pth")["step"] == 18


def test_the_saved_weights_are_the_moving_average_of_the_trained_ones(data, tmp_path):
    raw = trainer.train_from_spec(make_spec(data, num_epochs=2), tmp_path / "raw", options={**OPTIONS, "ema_epochs": 0})
    averaged = trainer.train_from_spec(make_spec(data, num_epochs=2), tmp_path / "ema", options=OPTIONS)
    assert raw["weight_average"] is None and averaged["weight_average"] == {"ema_epochs": 1.5}
    raw_weights = load_checkpoint(tmp_path / "raw" / "latest.pth")["state_dict"]
    ema_weights = load_checkpoint(tmp_path / "ema" / "latest.pth")["state_dict"]
    # the same seed trains the same raw weights; the average lags them, so it differs
    name = "head.2.weight"
    assert not torch.allclose(raw_weights[name], ema_weights[name])
    model = ChangeNetLite(ModelArch())
    average = epoch.weight_average(model, ema_epochs=1.0, steps_per_epoch=10)
    average.update_parameters(model)  # the first update copies the weights
    with torch.no_grad():
        start = average.module.head[2].weight.clone()
        for parameter in model.parameters():
            parameter.add_(1.0)
    average.update_parameters(model)
    moved = average.module.head[2].weight - start
    assert torch.allclose(moved, torch.full_like(moved, 1.0 - math.exp(-0.1)), atol=1e-5)  # decay e^(-1/10)
    assert epoch.weight_average(model, ema_epochs=0, steps_per_epoch=10) is None


@pytest.mark.parametrize("difference_module", ["learnable", "euclidean"])
def test_batchnorm_recalibration_gives_the_statistics_of_a_full_forward_pass(difference_module):
    """The recalibration stops at the difference maps; were a BatchNorm added after them, its
    statistics would go stale and this fails."""
    arch = ModelArch(image_width=24, image_height=16, difference_module=difference_module)
    generator = torch.Generator().manual_seed(3)
    shape = (40, arch.num_lights, arch.channels, arch.image_height, arch.image_width)
    data = epoch.PairTensors(torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
                               torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
                               torch.zeros(40, dtype=torch.int64))
    recalibrated, reference = ChangeNetLite(arch), ChangeNetLite(arch)
    reference.load_state_dict(recalibrated.state_dict())
    epoch.recalibrate_batchnorm(recalibrated, data, batch_size=16, device=torch.device("cpu"))
    norms = [m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None
    reference.train()
    with torch.no_grad():
        for start in range(0, 40, 16):
            reference(data.golden[start : start + 16], data.test[start : start + 16])
    assert norms and not recalibrated.training
    for name, value in reference.state_dict().items():
        assert torch.equal(value, recalibrated.state_dict()[name]), name

def test_linear_policy_decays_to_zero_per_step(trained):
    rows = _metrics(trained[0])
    # the LR of each epoch's last step: lr * (1 - steps_before / 18)
    assert [row["lr"] for row in rows] == pytest.approx([3e-3 * (1 - s / 18) for s in (5, 11, 17)])


def test_step_policy_drops_tenfold_at_two_thirds():
    factor = epoch.lr_factor("step", num_epochs=10, steps_per_epoch=4)
    assert [factor(number * 4) for number in range(10)] == [1.0] * 7 + [0.1] * 3
    assert epoch.lr_factor("linear", num_epochs=2, steps_per_epoch=5)(5) == 0.5


def test_a_warmup_ramps_the_lr_up_then_hands_over_to_the_policy():
    factor = epoch.lr_factor("linear", num_epochs=2, steps_per_epoch=5, warmup_steps=5)
    assert [factor(step) for step in range(5)] == pytest.approx([(s + 1) / 5 * (1 - s / 10) for s in range(5)])
    assert factor(5) == 0.5 and factor(9) == pytest.approx(0.1)


def test_sampler_weights_follow_tao_formula():
    is_defect = np.array([False] * 8 + [True] * 2)
    weights = epoch.sampler_weights(is_defect, 0.25)
    assert weights.tolist() == [1.0] * 8 + [8 / 2 * 0.25] * 2
    assert epoch.sampler_weights(is_defect, 0.0).tolist() == [1.0] * 10

    draws = epoch.epoch_indices(weights, torch.Generator().manual_seed(3))
    again = epoch.epoch_indices(weights, torch.Generator().manual_seed(3))
    assert len(draws) == 10 and torch.equal(draws, again)
    # With replacement and proportional to the weights: over many draws defects make up 2 / (8 + 2) of them.
    generator = torch.Generator().manual_seed(0)
    many = torch.multinomial(torch.as_tensor(weights), 20000, replacement=True, generator=generator)
    assert (many >= 8).float().mean().item() == pytest.approx(2 / 10, abs=0.01)


def test_same_seed_gives_identical_metrics(data, tmp_path, trained):
    again = trainer.train_from_spec(make_spec(data, checkpoint_interval=2), tmp_path / "again", options=OPTIONS)
    strip = lambda rows: [{k: v for k, v in row.items() if k not in ("seconds", "train_seconds")} for row in rows]  # noqa: E731
    assert strip(_metrics(tmp_path / "again")) == strip(_metrics(trained[0]))
    assert again["best_val_far_pct"] == trained[1]["best_val_far_pct"]


def test_training_lowers_validation_loss(tmp_path):
    data = write_pairs_dataset(tmp_path, {"train": (60, 20), "val": (30, 10)}, seed=1)
    spec = make_spec(data, num_epochs=6)
    spec["dataset"]["classify"]["augmentation_config"] = {
        "augment": True,
        "random_rotate": {"enable": True, "rotate_probability": 0.5, "angle_list": [90, 180, 270]},
        "random_color": {"enable": True, "color_probability": 0.5, "brightness": 0.2, "contrast": 0.2,
                         "saturation": 0.2, "hue": 0.05},
    }
    summary = trainer.train_from_spec(spec, tmp_path / "run", options=OPTIONS)

    # A fresh model already ranks drawn blobs well by chance (its FAR can be 0), so the learning signal
    # is the loss: ~0.68 untrained, < 0.1 after six short epochs on every seed tried.
    untrained = _untrained_val_loss(spec)
    assert summary["best_val_loss"] < 0.3 * untrained
    assert summary["best_val_far_pct"] <= 10
    assert summary["final"]["val_accuracy"] >= 0.9
    assert not summary["collapsed"]


def _untrained_val_loss(spec: dict) -> float:
    """Weighted CE on validation of a freshly initialised model with the run's seed."""

    settings = spec_settings.train_settings(spec)
    trainer.seed_everything(settings.seed)
    model = trainer.ChangeNetLite(trainer.arch_from_settings(settings, trainer.TrainOptions(**OPTIONS)))
    val = trainer.load_pairs(settings.val_csv, settings.val_images_dir, model.arch, 1, "validation")
    criterion = torch.nn.CrossEntropyLoss(weight=torch.tensor(settings.cls_weight))
    logits = predict(model, val.golden, val.test, batch_size=64, device=torch.device("cpu"))
    return criterion(logits, val.labels).item()


def test_warm_start_loads_weights_and_rejects_other_architecture(data, tmp_path, trained):
    results, _ = trained
    spec = make_spec(data, num_epochs=1, pretrained_model_path=str(results / "latest.pth"))
    spec["train"]["optim"]["lr"] = 0.0  # no update: the warm-started model must equal the checkpoint
    summary = trainer.train_from_spec(spec, tmp_path / "warm", options={**OPTIONS, "warm_start_warmup_epochs": 1.0})
    assert summary["pretrained"] == str(results / "latest.pth")
    assert summary["warmup_steps"] == len(epoch.batch_bounds(len(pd.read_csv(data["train"])), 8))  # one epoch
    start = build_model_from_checkpoint(results / "latest.pth").state_dict()
    after = build_model_from_checkpoint(tmp_path / "warm" / "latest.pth").state_dict()
    weights = [name for name in start if "running_" not in name and "num_batches" not in name]
    assert all(torch.equal(start[name], after[name]) for name in weights)

    wider = make_spec(data, num_epochs=1)
    wider["model"]["classify"]["learnable_difference_modules"] = 3
    with pytest.raises(InputError) as error:
        trainer.train_from_spec(wider, tmp_path / "bad", pretrained=results / "latest.pth", options=OPTIONS)
    message = str(error.value)
    assert "latest.pth" in message and "difference.0.block.0.weight" in message
    assert "(32, 64, 3, 3)" in message and "(64, 128, 3, 3)" in message


def test_training_csv_without_defects_is_an_input_error(tmp_path):
    data = write_pairs_dataset(tmp_path, {"train": (6, 0), "val": (4, 2)})
    with pytest.raises(InputError, match="train CSV .* has no defect"):
        trainer.train_from_spec(make_spec(data), tmp_path / "run", options=OPTIONS)


def test_cli_trains_and_reports_input_errors(data, tmp_path, capsys):
    import yaml

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(make_spec(data)))
    argv = ["--spec", str(spec_path), "--results-dir", str(tmp_path / "cli"), "--device", "cpu", "--threads", "1",
            "--set", "train.num_epochs=1", "--set", "train.optim.lr=1e-3"]
    assert train_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1 loss " in out and "val_FAR@100%R " in out and "pred PASS/NO_PASS " in out
    epoch_line = next(text for text in out.splitlines() if "epoch 1/1 " in text)
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] epoch 1/1 ", epoch_line)
    assert re.search(r" best [\d.]+% \(epoch 1\) .* ETA 0\.0s$", epoch_line)
    assert "train.csv: 48 rows x 2 lights" in out and "train.csv: done, 48 rows in " in out  # decode start, end
    assert _metrics(tmp_path / "cli")[0]["lr"] == pytest.approx(1e-3 / 6)  # last of 6 linearly decayed steps
    assert sorted(path.name for path in (tmp_path / "cli").glob("model_epoch_*")) == ["model_epoch_000_step_00006.pth"]

    assert train_cli.main([*argv, "--set", "train.optim.lr"]) == 2
    assert "dotted.key=value" in capsys.readouterr().err


# ---- augmentation (augment.py): one draw per pair, the same for golden, test and every light ----

ALL_ON = AugmentationSettings(
    augment=True, hflip_probability=0.5, vflip_probability=0.5, rotate_probability=0.5,
    color_probability=0.5, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.2, scale_range=(0.7, 1.0),
)
NONE_ON = replace(ALL_ON, flip_enabled=False, rotate_enabled=False, color_enabled=False, scale_crop_enabled=False)


def _batch(seed: int = 0, shape: tuple[int, ...] = (16, 2, 3, 12, 12)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_augmentation_treats_golden_and_test_of_a_pair_alike():
    golden = _batch()
    out_golden, out_test = augment_pairs(golden, golden.clone(), ALL_ON, torch.Generator().manual_seed(1))
    assert torch.equal(out_golden, out_test)  # an unchanged pair stays unchanged: no fake differences
    assert not torch.allclose(out_golden, golden)
    assert out_golden.min() >= 0 and out_golden.max() <= 1

    again = augment_pairs(golden, golden.clone(), ALL_ON, torch.Generator().manual_seed(1))[0]
    assert torch.equal(again, out_golden)


def test_augmentation_transforms_each_light_image_before_stacking():
    x = _batch(shape=(4, 2, 3, 12, 12))
    flipped, _ = augment_pairs(x, x, replace(NONE_ON, flip_enabled=True, hflip_probability=1.0, vflip_probability=0.0),
                               torch.Generator())
    assert torch.equal(flipped, x.flip(-1))  # each light flipped in place, lights not swapped
    rotated, _ = augment_pairs(x, x, replace(NONE_ON, rotate_enabled=True, rotate_probability=1.0, angle_list=(90,)),
                               torch.Generator())
    assert torch.equal(rotated, torch.rot90(x, 1, dims=(-2, -1)))
    wide = _batch(shape=(4, 2, 3, 8, 12))
    rotated_wide, _ = augment_pairs(wide, wide, replace(NONE_ON, rotate_enabled=True, rotate_probability=1.0,
                                                        angle_list=(90, 270)), torch.Generator())
    assert torch.equal(rotated_wide, wide)  # 90/270 would change a non-square image's shape: skipped


def test_augmentation_switches_and_identity_ranges():
    x = _batch()
    assert augment_pairs(x, x, replace(ALL_ON, augment=False), torch.Generator())[0] is x
    assert torch.equal(augment_pairs(x, x, NONE_ON, torch.Generator())[0], x)
    no_zoom = replace(NONE_ON, scale_crop_enabled=True, scale_range=(1.0, 1.0))
    unscaled, _ = augment_pairs(x, x, no_zoom, torch.Generator())
    assert torch.allclose(unscaled, x, atol=1e-5)
    colour_off, _ = augment_pairs(x, x, replace(NONE_ON, color_enabled=True, color_probability=0.0), torch.Generator())
    assert torch.equal(colour_off, x)
    with pytest.raises(InputError, match="multiples of 90"):
        augment_pairs(x, x, replace(NONE_ON, rotate_enabled=True, angle_list=(45,)), torch.Generator())


def test_batches_augmented_together_get_what_they_get_one_by_one():
    # A GPU gathers and augments several batches at once (epoch.batch_groups); each pair must still
    # get the parameters, and so the pixels, it gets when its batch is augmented alone.
    golden, test = _batch(seed=3, shape=(23, 2, 3, 12, 12)), _batch(seed=4, shape=(23, 2, 3, 12, 12))
    sizes = [8, 8, 7]
    one_by_one, generator, start = [], torch.Generator().manual_seed(5), 0
    for size in sizes:
        one_by_one.append(augment_pairs(golden[start : start + size].clone(), test[start : start + size].clone(),
                                        ALL_ON, generator))
        start += size
    together = augment_pairs(golden.clone(), test.clone(), ALL_ON, torch.Generator().manual_seed(5), sizes)
    assert torch.equal(together[0], torch.cat([pair[0] for pair in one_by_one]))
    assert torch.equal(together[1], torch.cat([pair[1] for pair in one_by_one]))
    # drawn as one batch of 23 the parameters differ: the batch sizes are what keeps them
    assert not torch.equal(augment_pairs(golden.clone(), test.clone(), ALL_ON, torch.Generator().manual_seed(5))[0],
                           together[0])
    with pytest.raises(ValueError, match="do not add up"):
        augment_pairs(golden, test, ALL_ON, torch.Generator(), [8, 8])


def test_batches_are_grouped_only_on_a_gpu():
    bounds = epoch.batch_bounds(100, 16)
    assert epoch.batch_groups(bounds, 1 << 20, torch.device("cpu")) == [[bound] for bound in bounds]
    on_gpu = epoch.batch_groups(bounds, epoch.GPU_BATCH_GROUP_BYTES // 3, torch.device("cuda"))
    assert [len(group) for group in on_gpu] == [3, 3, 1]
    assert [bound for group in on_gpu for bound in group] == bounds
    huge = epoch.batch_groups(bounds, 2 * epoch.GPU_BATCH_GROUP_BYTES, torch.device("cuda"))
    assert huge == [[bound] for bound in bounds]  # a batch larger than the budget is still one group


def test_spec_paths_resolve_against_the_workspace_root(tmp_path):
    assert train_cli.workspace_root_of(tmp_path / "ws" / "specs" / "baseline_spec.yaml") == (tmp_path / "ws").resolve()
    assert train_cli.workspace_root_of(tmp_path / "elsewhere" / "spec.yaml") == (tmp_path / "elsewhere").resolve()
