"""ChangeNet-lite model shapes and modes, and the weights-only checkpoint format."""

from __future__ import annotations

import pytest
import torch

from aoideft import checkpoint
from aoideft.errors import InputError
from aoideft.model import ChangeNetLite, ModelArch, best_shifted, defect_scores

ALL_LIGHTS = ("LowAngleLight", "SolderLight", "UniformLight", "WhiteLight")

torch.set_num_threads(1)


def _pairs(arch: ModelArch, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, arch.num_lights, arch.channels, arch.image_height, arch.image_width)
    return (
        torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
        torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
    )


@pytest.mark.parametrize("modules", [1, 2, 3, 4])
@pytest.mark.parametrize("stacking", ["linear", "grid", "channels"])
def test_logits_and_embedding_shapes_per_difference_modules_and_stacking(modules, stacking):
    arch = ModelArch(
        lights=ALL_LIGHTS[:3],
        image_width=24,
        image_height=16,
        light_stacking="channels" if stacking == "channels" else "spec",
        concat_type="grid" if stacking == "grid" else "linear",
        grid=(2, 2),
        learnable_difference_modules=modules,
        embed_dec=7,
    )
    model = ChangeNetLite(arch).eval()
    golden, test = _pairs(arch)
    stacked = {"linear": (3, 48, 24), "grid": (3, 32, 48), "channels": (9, 16, 24)}[stacking]
    assert tuple(model.stack(golden).shape) == (3, *stacked)
    assert model.backbone.stages[0][0].in_channels == stacked[0]
    assert tuple(model(golden, test).shape) == (3, 2)
    assert tuple(model.embed(golden, test).shape) == (3, arch.embedding_dim)
    # one learnable block per compared level, the deepest ones, at that level's width
    widths = [block.block[0].out_channels for block in model.difference]
    assert widths == [16, 32, 64, 128][4 - modules :]
    assert model.head[0].out_features == 7


@pytest.mark.parametrize("num_lights", [1, 2, 3, 4])
def test_any_number_of_lights(num_lights):
    arch = ModelArch(lights=ALL_LIGHTS[:num_lights], image_width=16, image_height=16, concat_type="grid")
    model = ChangeNetLite(arch).eval()
    scores = defect_scores(model(*_pairs(arch, batch=2)))
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 1)).all())
    assert tuple(model.stack(_pairs(arch)[0]).shape[-2:]) == (32, 32)  # 2x2 grid, empty cells zero


def test_euclidean_mode_has_no_learnable_difference_and_ignores_identical_content():
    learnable = ChangeNetLite(ModelArch(lights=ALL_LIGHTS[:2], image_width=16, image_height=16))
    arch = ModelArch(lights=ALL_LIGHTS[:2], image_width=16, image_height=16, difference_module="euclidean")
    model = ChangeNetLite(arch).eval()
    assert model.difference is None
    assert not [name for name, _ in model.named_parameters() if name.startswith("difference")]
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in learnable.parameters())
    # |f_test - f_golden| is zero for identical images, so every no-change pair gets the same logits.
    first, second = _pairs(arch, seed=1)
    assert torch.allclose(model(first, first), model(second, second), atol=1e-6)
    assert not torch.allclose(model(first, second), model(first, first), atol=1e-4)


def test_arch_round_trips_as_plain_values_and_rejects_bad_settings():
    arch = ModelArch(lights=ALL_LIGHTS[1:3], concat_type="grid", grid=(1, 2), learnable_difference_modules=2)
    data = arch.to_dict()
    assert data["num_lights"] == 2 and data["grid"] == [1, 2] and data["lights"] == list(ALL_LIGHTS[1:3])
    assert ModelArch.from_dict(data) == arch
    with pytest.raises(InputError, match="learnable_difference_modules"):
        ModelArch(learnable_difference_modules=5)
    with pytest.raises(InputError, match="num_lights"):
        ModelArch.from_dict({**data, "num_lights": 3})


def test_registration_options_are_checked_and_old_checkpoints_read_as_unregistered():
    arch = ModelArch(align="phase", align_max_shift_px=3.0, shift_tolerance_px=2.0)
    assert ModelArch.from_dict(arch.to_dict()) == arch
    written_before = {k: v for k, v in ModelArch().to_dict().items()
                      if k not in ("align", "align_max_shift_px", "shift_tolerance_px")}
    old = ModelArch.from_dict(written_before)
    assert old.align == "none" and old.shift_tolerance_px == 0.0
    with pytest.raises(InputError, match="embedded.align"):
        ModelArch(align="ecc")
    with pytest.raises(InputError, match="align_max_shift_px"):
        ModelArch(image_width=16, image_height=16, align_max_shift_px=5.0)
    with pytest.raises(InputError, match="shift_tolerance_px"):
        ModelArch(shift_tolerance_px=-1.0)
    # 2 px reach: one feature pixel at strides 2 and 4, none deeper
    assert [arch.tolerance_radius(level) for level in range(4)] == [1, 1, 0, 0]


def test_best_shifted_finds_the_shifted_golden_but_not_a_new_blob():
    generator = torch.Generator().manual_seed(0)
    test = torch.rand(1, 4, 12, 12, generator=generator)
    golden = torch.roll(test, shifts=(1, -1), dims=(-2, -1))  # the same content one pixel off
    inner = (Ellipsis, slice(2, -2), slice(2, -2))
    assert torch.equal(best_shifted(golden, test, 0), golden)
    assert torch.allclose(best_shifted(golden, test, 1)[inner], test[inner])
    blob = test.clone()
    blob[..., 5:8, 5:8] += 3.0  # a change no neighbouring golden position explains
    matched = best_shifted(golden, blob, 1)
    assert (blob - matched)[..., 5:8, 5:8].abs().min() > 1.0


def test_shift_tolerance_makes_the_difference_smaller_for_a_shifted_golden():
    arch = ModelArch(lights=ALL_LIGHTS[:1], image_width=32, image_height=32, difference_module="euclidean")
    tolerant = ModelArch(**{**arch.__dict__, "shift_tolerance_px": 2.0})
    torch.manual_seed(0)
    plain = ChangeNetLite(arch).eval()
    shifting = ChangeNetLite(tolerant).eval()
    shifting.load_state_dict(plain.state_dict())  # no new parameters: the same weights fit both
    test = _pairs(arch, batch=2)[1]
    golden = torch.roll(test, shifts=(2, 2), dims=(-2, -1))
    with torch.no_grad():
        before = plain.difference_maps(golden, test)
        after = shifting.difference_maps(golden, test)
    assert after[0].mean() < 0.8 * before[0].mean()  # stride 2: the 2-px shift is one feature pixel
    assert torch.equal(after[-1], before[-1])  # deeper levels: no reach


def _trained_looking_model(arch: ModelArch) -> ChangeNetLite:
    """A model whose BatchNorm running statistics moved, so a reload must restore them too."""
    model = ChangeNetLite(arch)
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(*_pairs(arch, batch=4, seed=seed))
    return model.eval()


def test_checkpoint_round_trip_gives_the_same_scores(tmp_path):
    arch = ModelArch(lights=ALL_LIGHTS[:2], image_width=16, image_height=16, light_stacking="channels")
    model = _trained_looking_model(arch)
    path = tmp_path / checkpoint.checkpoint_name(3, 120)
    assert path.name == "model_epoch_003_step_00120.pth"
    checkpoint.save_checkpoint(path, model, epoch=3, step=120, metrics={"val_far_pct": 12.5, "counts": {"PASS": 3}})

    payload = torch.load(path, weights_only=True)  # plain tensors and primitives only
    assert payload["format"] == checkpoint.FORMAT and payload["epoch"] == 3 and payload["step"] == 120
    assert payload["metrics"] == {"val_far_pct": 12.5, "counts": {"PASS": 3}}
    assert payload["arch"]["lights"] == list(ALL_LIGHTS[:2]) and payload["arch"]["image_ext"] == ".jpg"

    reloaded = checkpoint.build_model_from_checkpoint(path)
    assert not reloaded.training and reloaded.arch == arch
    golden, test = _pairs(arch, seed=5)
    with torch.no_grad():
        assert torch.equal(model(golden, test), reloaded(golden, test))


class ArbitraryObject:
    """Not a tensor or a primitive: a weights-only load must refuse to unpickle it."""


def test_pickle_payload_is_refused(tmp_path):
    model = ChangeNetLite(ModelArch(image_width=16, image_height=16))
    path = tmp_path / "evil.pth"
    torch.save(
        {
            "format": checkpoint.FORMAT,
            "arch": model.arch.to_dict(),
            "state_dict": model.state_dict(),
            "epoch": 0,
            "step": 0,
            "metrics": {"note": ArbitraryObject()},
        },
        path,
    )
    with pytest.raises(InputError, match="evil.pth holds a Python object .*ArbitraryObject.*refused"):
        checkpoint.load_checkpoint(path)


def test_foreign_or_missing_checkpoints_are_input_errors(tmp_path):
    torch.save({"model": {}}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not an aoideft ChangeNet-lite checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(InputError, match="does not exist"):
        checkpoint.load_checkpoint(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("not torch")
    with pytest.raises(InputError, match="not a readable torch file"):
        checkpoint.load_checkpoint(tmp_path / "text.pth")


def test_warm_start_mismatch_names_parameter_and_shapes(tmp_path):
    source = ChangeNetLite(ModelArch(lights=ALL_LIGHTS[:2], light_stacking="channels"))
    checkpoint.save_checkpoint(tmp_path / "two_lights.pth", source, epoch=0, step=1, metrics={})
    target = ChangeNetLite(ModelArch(lights=ALL_LIGHTS[:3], light_stacking="channels"))
    with pytest.raises(InputError) as error:
        checkpoint.load_pretrained_weights(target, tmp_path / "two_lights.pth")
    message = str(error.value)
    assert "two_lights.pth" in message and "backbone.stages.0.0.weight" in message
    assert "(16, 6, 3, 3)" in message and "(16, 9, 3, 3)" in message

    fewer = ChangeNetLite(ModelArch(lights=ALL_LIGHTS[:2], light_stacking="channels", learnable_difference_modules=1))
    # the model's first difference block sits at the deepest level, the checkpoint's at the shallowest
    shapes = r"difference.0.block.0.weight has shape \(16, 32, 3, 3\) in the checkpoint but \(128, 256, 3, 3\)"
    with pytest.raises(InputError, match=shapes):
        checkpoint.load_pretrained_weights(fewer, tmp_path / "two_lights.pth")

    same = ChangeNetLite(ModelArch(lights=ALL_LIGHTS[:2], light_stacking="channels"))
    checkpoint.load_pretrained_weights(same, tmp_path / "two_lights.pth")
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), source.state_dict().values()))
