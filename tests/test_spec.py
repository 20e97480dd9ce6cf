"""Tests for aoideft.spec: loading, interpolation, TAO-schema validation, notes, settings, dotted keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aoideft.errors import InputError
from aoideft.spec import (
    deep_merge,
    flatten_spec,
    get_dotted,
    load_spec,
    resolve_interpolations,
    schema_default,
    set_dotted,
    validate_spec,
    with_overrides,
)
from aoideft.spec_settings import AugmentationSettings, train_settings
from aoideft.spec_unhonoured import UNHONOURED_KEYS

BASELINE = Path(__file__).parent / "data" / "tao_baseline_spec.yaml"


@pytest.fixture
def baseline() -> dict:
    return load_spec(BASELINE)


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def minimal_spec(**overrides) -> dict:
    """A small classify spec (two lights) with dotted-key overrides applied."""
    spec = {"task": "classify", "train": {"num_epochs": 4, "checkpoint_interval": 2},
            "dataset": {"classify": {"num_input": 2, "input_map": {"UniformLight": 1, "SolderLight": 0},
                                     "image_width": 64, "image_height": 64}}}
    return deep_merge(spec, overrides)


# ---- loading -------------------------------------------------------------------------------------


def test_baseline_loads_with_omegaconf_floats_and_interpolations(baseline):
    assert baseline["train"]["optim"]["lr"] == pytest.approx(1e-5)  # YAML 1.1 would give a string
    assert baseline["evaluate"]["batch_size"] == 16 and isinstance(baseline["evaluate"]["batch_size"], int)
    assert baseline["inference"]["batch_size"] == 16
    # results_dir is a key of this spec, so it resolves (inside a longer string, as text)
    assert baseline["export"]["onnx_file"] == "/results/export/changenet-classify.onnx"


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write_spec(tmp_path, "train:\n  num_epochs: 3\n  optim: [1, 2\nmodel: {}\n")
    with pytest.raises(InputError, match=r"spec\.yaml: YAML error at line \d+") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_non_mapping_and_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"spec\.yaml: line 1: a spec must be a YAML mapping"):
        load_spec(write_spec(tmp_path, "- train\n- model\n"))
    with pytest.raises(InputError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_duplicate_key_is_an_error_with_its_line(tmp_path):
    path = write_spec(tmp_path, "train:\n  num_epochs: 3\n  num_epochs: 5\n")
    with pytest.raises(InputError, match=r"line 3.*duplicate key 'num_epochs' \(first set at line 2\)"):
        load_spec(path)


def test_interpolation_types_chains_literals_and_cycles():
    spec = {"a": {"b": 8, "c": "${a.b}", "d": "x${a.b}y", "e": "${a.c}"},
            "f": "${results_dir}/train", "g": "${oc.env:HOME}", "h": ["${a.b}"], "i": "${a}"}
    out = resolve_interpolations(spec)
    assert out["a"]["c"] == 8 and out["a"]["d"] == "x8y" and out["a"]["e"] == 8
    assert out["f"] == "${results_dir}/train" and out["g"] == "${oc.env:HOME}"
    assert out["h"] == [8] and out["i"]["c"] == 8
    assert spec["a"]["c"] == "${a.b}"  # input untouched
    with pytest.raises(InputError, match=r"interpolation cycle .*x\.p -> x\.q -> x\.p"):
        resolve_interpolations({"x": {"p": "${x.q}", "q": "${x.p}"}})


# ---- validation ----------------------------------------------------------------------------------


def test_tao_baseline_validates_with_notes(baseline):
    notes = validate_spec(baseline, str(BASELINE))
    assert len(notes) == len(set(notes))
    expected = [
        "model.backbone.type 'c_radio_v2_vit_base_patch16_224' -> embedded ChangeNet-lite CNN",
        "model.backbone.pretrained_backbone_path: ignored",
        "train.num_nodes/num_gpus/gpu_ids: ignored",
        "model.decode_head.*: ignored",
        "train.tensorboard: ignored",
        "encryption_key: ignored",
        "export: accepted as TAO's export action section",
        "model.classify.embedding_vectors: ignored",
        "model.classify.train_margin_euclid: ignored",
        "augmentation_config.with_random_blur/with_random_crop: ignored",
    ]
    for start in expected:
        assert sum(note.startswith(start) for note in notes) == 1, start
    # honoured values give no note
    assert not any(note.startswith(("train.classify.loss", "model.classify.difference_module")) for note in notes)


def test_value_dependent_notes():
    spec = minimal_spec(**{"train.classify.loss": "contrastive", "model.classify.difference_module": "euclidean",
                           "train.precision": "16-mixed", "train.optim.optim": "adam",
                           "train.num_gpus": 2, "train.gpu_ids": [0, 1], "gen_trt_engine": {"anything": 1}})
    notes = validate_spec(spec, "s.yaml")
    assert "train.classify.loss 'contrastive' -> cross-entropy" in notes
    assert any(n.startswith("model.classify.difference_module 'euclidean' -> fixed |f_test - f_golden|") for n in notes)
    assert any(n.startswith("train.precision '16-mixed': ignored") for n in notes)
    assert "train.optim.optim 'adam' -> adamw" in notes
    assert sum(n.startswith("train.num_nodes/num_gpus/gpu_ids") for n in notes) == 1
    assert any(n.startswith("gen_trt_engine: accepted") for n in notes)
    assert validate_spec(minimal_spec(), "s.yaml") == []


def test_notes_table_names_only_valid_tao_keys():
    from aoideft.spec import OTHER_ACTION_SECTIONS, schema_properties

    for row in UNHONOURED_KEYS:
        for key in row.keys:
            assert key in schema_properties() or key in OTHER_ACTION_SECTIONS, key


def test_embedded_ignored_keys_come_from_the_table():
    from aoideft.spec import EMBEDDED_IGNORED_KEYS

    assert {"model.classify.eval_margin", "model.classify.train_margin_euclid", "train.classify.loss",
            "model.decode_head.feature_strides", "export"} <= EMBEDDED_IGNORED_KEYS
    # honoured keys (mapped values only, or fully honoured) stay sweepable
    assert not {"model.classify.difference_module", "train.optim.optim", "train.optim.lr",
                "dataset.classify.fpratio_sampling", "model.classify.learnable_difference_modules"} & EMBEDDED_IGNORED_KEYS


def test_unknown_key_names_file_key_and_nearest():
    spec = minimal_spec(**{"train.optim.learning_rate": 0.01})
    with pytest.raises(InputError) as info:
        validate_spec(spec, "specs/x.yaml")
    assert str(info.value) == ("specs/x.yaml: unknown spec key 'train.optim.learning_rate'; "
                               "did you mean 'train.optim.lr'?")
    with pytest.raises(InputError, match=r"unknown spec key 'traing'"):
        validate_spec({"traing": {"num_epochs": 3}}, "s.yaml")


def test_free_form_collections_and_other_action_sections_are_not_checked():
    spec = minimal_spec(**{"dataset.classify.input_map": {"MyOwnLight": 0, "Other": 1},
                           "model.decode_head.decoder_params": {"whatever": 1},
                           "export": {"made_up": {"deep": True}}})
    validate_spec(spec, "s.yaml")


@pytest.mark.parametrize("key, value, message", [
    ("train.num_epochs", "ten", r"'train\.num_epochs' must be an integer, got 'ten'"),
    ("train.num_epochs", True, r"'train\.num_epochs' must be an integer"),
    ("train.num_epochs", 0, r"'train\.num_epochs' must be at least 1, got 0"),
    ("train.optim.lr", "fast", r"'train\.optim\.lr' must be a number"),
    ("train.optim.momentum", 1.5, r"'train\.optim\.momentum' must be at least 0 and at most 1, got 1\.5"),
    ("train.optim.policy", "cosine", r"'train\.optim\.policy' must be one of 'linear', 'step', got 'cosine'"),
    ("dataset.classify.concat_type", "stack", r"'dataset\.classify\.concat_type' must be one of"),
    ("dataset.classify.augmentation_config.augment", "yes", r"augment' must be true or false"),
    ("dataset.classify.augmentation_config.rgb_input_mean", 0.5, r"rgb_input_mean' must be a list"),
    ("dataset.classify.input_map", ["SolderLight"], r"'dataset\.classify\.input_map' must be a mapping"),
    ("train.optim", 3, r"'train\.optim' must be a section"),
    ("train.num_epochs", "${nowhere}", r"'train\.num_epochs' must be an integer; its \$\{\.\.\.\} does not name"),
])
def test_value_errors_name_the_key(key, value, message):
    with pytest.raises(InputError, match=message):
        validate_spec(minimal_spec(**{key: value}), "s.yaml")


def test_backbone_type_is_exempt_from_the_enum_and_null_means_default():
    validate_spec(minimal_spec(**{"model.backbone.type": "anything_new", "train.seed": None}), "s.yaml")


# ---- settings ------------------------------------------------------------------------------------


def test_train_settings_from_baseline(baseline, tmp_path):
    settings = train_settings(baseline, tmp_path)
    assert settings.lights == ("SolderLight",)
    assert (settings.lr, settings.optimizer, settings.policy) == (pytest.approx(1e-5), "adamw", "linear")
    assert settings.cls_weight == (1.0, 10.0) and settings.loss == "ce"
    assert (settings.num_epochs, settings.checkpoint_interval, settings.validation_interval) == (10, 5, 10)
    assert settings.pretrained_model_path is None
    assert (settings.batch_size, settings.workers, settings.fpratio_sampling) == (16, 2, 0.2)
    assert (settings.image_width, settings.image_height, settings.image_ext) == (224, 224, ".jpg")
    assert (settings.difference_module, settings.learnable_difference_modules, settings.embed_dec) == ("learnable", 4, 30)
    assert settings.train_csv == "/data/datasets/NV_PCB_Siamese/csv/training_set.csv"  # absolute stays
    aug = settings.augmentation
    assert aug.augment and aug.rgb_std == (0.229, 0.224, 0.225) and aug.angle_list == (90, 180, 270)
    assert aug.scale_range == pytest.approx((1 / 1.2, 1.0))  # TAO default factor [1, 1.2] as crop fraction
    assert settings.seed == 1234  # schema default: the baseline is silent


def test_train_settings_defaults_order_lights_and_resolve_paths(tmp_path):
    spec = minimal_spec(**{"dataset.classify.train_dataset": {"csv_path": "train/base/training_set.csv",
                                                              "images_dir": "images"},
                           "train.pretrained_model_path": ""})
    settings = train_settings(spec, tmp_path)
    assert settings.lights == ("SolderLight", "UniformLight")  # by input_map value, not file order
    assert settings.train_csv == str(tmp_path / "train/base/training_set.csv")
    assert settings.train_images_dir == str(tmp_path / "images")
    assert settings.val_csv is None and settings.pretrained_model_path is None
    # schema defaults where the spec is silent
    assert settings.batch_size == schema_default("dataset.classify.batch_size") == 8
    assert settings.lr == schema_default("train.optim.lr")
    assert settings.difference_module == "euclidean" and settings.embed_dec == 5
    assert settings.augmentation == AugmentationSettings(scale_range=settings.augmentation.scale_range)


@pytest.mark.parametrize("overrides, message", [
    ({"dataset.classify.num_input": 3}, r"'dataset\.classify\.num_input' is 3 but dataset\.classify\.input_map has 2"),
    ({"model.classify.learnable_difference_modules": 5}, r"'model\.classify\.learnable_difference_modules' must be"),
    ({"train.checkpoint_interval": 5}, r"'train\.checkpoint_interval' \(5\) must be <= train\.num_epochs \(4\)"),
    ({"dataset.classify.image_width": 0}, r"'dataset\.classify\.image_width' must be a positive"),
    ({"dataset.classify.concat_type": "grid", "dataset.classify.grid_map": {"x": 1, "y": 1}},
     r"'dataset\.classify\.grid_map' 1x1 has fewer cells than the 2 lights"),
    ({"train.classify.cls_weight": [1.0, 2.0, 3.0]}, r"'train\.classify\.cls_weight' must have 2 entries"),
    ({"dataset.classify.input_map": {"A": 0, "B": 0}}, r"input_map' must give each light a distinct position"),
    ({"task": "segment"}, r"'task' must be 'classify'"),
    ({"dataset.classify.image_ext": "jpg"}, r"image_ext' must start with a dot"),
    ({"dataset.classify.augmentation_config.with_scale_random_crop.scale_range": [0.5, 1.0]},
     r"scale_range' must be \[low, high\] rescale factors"),
])
def test_train_settings_cross_field_errors(overrides, message):
    with pytest.raises(InputError, match=message):
        train_settings(minimal_spec(**overrides), source="specs/x.yaml")


# ---- dotted keys ---------------------------------------------------------------------------------


def test_get_and_set_dotted():
    spec = {"train": {"optim": {"lr": 0.1}}}
    assert get_dotted(spec, "train.optim.lr") == 0.1
    assert get_dotted(spec, "train.optim.nope", "d") == "d" and get_dotted(spec, "train.optim.lr.x") is None
    set_dotted(spec, "model.classify.embed_dec", 7)
    assert spec["model"] == {"classify": {"embed_dec": 7}}


def test_deep_merge_with_dotted_and_nested_overrides(baseline):
    override = {"train.optim.lr": 0.01, "train": {"optim": {"momentum": 0.8}, "classify.loss": "ce"},
                "dataset.classify.input_map": {"UniformLight": 0}}
    merged = deep_merge(baseline, override)
    assert merged["train"]["optim"] == {**baseline["train"]["optim"], "lr": 0.01, "momentum": 0.8}
    assert merged["train"]["classify"]["cls_weight"] == [1.0, 10.0]
    assert merged["dataset"]["classify"]["input_map"] == {"UniformLight": 0}  # replaced, not merged
    assert baseline["train"]["optim"]["lr"] == pytest.approx(1e-5)  # inputs untouched


def test_flatten_spec_keeps_collections_and_round_trips(baseline):
    flat = flatten_spec(baseline)
    assert flat["train.optim.lr"] == pytest.approx(1e-5)
    assert flat["dataset.classify.input_map"] == {"SolderLight": 0}
    assert flat["dataset.classify.grid_map"] == {"x": 2, "y": 2}
    assert not any(key.startswith("dataset.classify.input_map.") for key in flat)
    assert deep_merge({}, flat) == baseline
    assert yaml.safe_load(yaml.safe_dump(flat)) == flat  # plain data, writable as YAML


def test_with_overrides_shrinks_the_checkpoint_interval_with_the_epochs():
    base = {"train": {"num_epochs": 10, "checkpoint_interval": 5}}
    assert with_overrides(base, {"train.num_epochs": 3})["train"]["checkpoint_interval"] == 3
    assert with_overrides(base, {"train.num_epochs": 8})["train"]["checkpoint_interval"] == 5
