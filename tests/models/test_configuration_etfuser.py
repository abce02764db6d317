"""ETFuserConfig: what transformers' ConfigTester checks, plus the nested encoder specs and the validation errors."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_etfuser_config, tiny_vit_config
from transformers import (
    AutoConfig,
    CLIPVisionConfig,
    ConvNextConfig,
    PreTrainedConfig,
    ViTConfig,
)

from etfuser_hf import EncoderSpec, ETFuserConfig


def test_builds_with_no_arguments():
    config = ETFuserConfig()
    assert config.model_type == "etfuser"
    assert config.priors == {}
    assert isinstance(config.backbone_config, ViTConfig)
    assert config.backbone.frozen is False
    assert config.fusion_mode == "prepend_token"


def test_common_properties(tiny_config):
    for attribute in ("hidden_size", "num_attention_heads", "num_hidden_layers", "num_labels", "id2label"):
        assert hasattr(tiny_config, attribute)
    assert tiny_config.num_labels == 5 and len(tiny_config.id2label) == 5


def test_json_string_round_trip(tiny_config):
    rebuilt = ETFuserConfig.from_dict(json.loads(tiny_config.to_json_string()))
    assert rebuilt.to_dict() == tiny_config.to_dict()
    assert isinstance(rebuilt.priors["convnext"].config, ConvNextConfig)
    assert isinstance(rebuilt.priors["clip"].config, CLIPVisionConfig)
    assert rebuilt.priors["convnext"].feature == "topk" and rebuilt.priors["convnext"].num_tokens == 3


def test_json_file_and_save_pretrained_round_trip(tiny_config, tmp_path):
    tiny_config.to_json_file(tmp_path / "config.json")
    assert ETFuserConfig.from_json_file(tmp_path / "config.json").to_dict() == tiny_config.to_dict()
    tiny_config.save_pretrained(tmp_path / "saved")
    def comparable(config):  # where a config was loaded from is not part of it
        return {key: value for key, value in config.to_dict().items() if key != "_name_or_path"}

    for loaded in (ETFuserConfig.from_pretrained(tmp_path / "saved"), AutoConfig.from_pretrained(tmp_path / "saved")):
        assert isinstance(loaded, ETFuserConfig)
        assert comparable(loaded) == comparable(tiny_config)


def test_saved_config_records_auto_map(tiny_config, tmp_path):
    tiny_config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoConfig"] == "configuration_etfuser.ETFuserConfig"
    assert saved["priors"]["vit"]["config"]["model_type"] == "vit"


def test_encoder_spec_defaults_follow_the_family():
    clip = EncoderSpec(config=CLIPVisionConfig(image_size=48))
    assert clip.image_size == [48, 48] and clip.image_mean[0] == pytest.approx(0.48145466)
    convnext = EncoderSpec(config=ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2))
    assert convnext.feature_dim == 16 and convnext.image_mean[0] == pytest.approx(0.485)
    grey = EncoderSpec(config=tiny_vit_config(num_channels=1))
    assert grey.color_mode == "grayscale" and len(grey.image_mean) == 1


def test_backbone_spec_keeps_an_explicit_frozen_flag():
    config = ETFuserConfig(backbone={"config": tiny_vit_config(), "frozen": True})
    assert config.backbone.frozen is True


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"attention_mask_strategy": "sparse"}, "attention_mask_strategy must be one of"),
        ({"fusion_mode": "sum"}, "fusion_mode must be one of"),
        ({"hidden_size": 30, "num_attention_heads": 4}, "divisible by num_attention_heads"),
        ({"num_ensemble_tokens": 0}, "num_ensemble_tokens must be a positive int"),
        ({"priors": {"bad name": tiny_vit_config()}}, "must be a Python identifier"),
        ({"priors": {"a": {"config": tiny_vit_config(), "feature": "max"}}}, r"priors\['a'\].feature must be one of"),
        ({"priors": {"a": {"config": tiny_vit_config(), "colour": "rgb"}}}, "unknown encoder spec keys"),
        ({"priors": {"a": {"model_type": "no_such_model"}}}, "unknown encoder model_type 'no_such_model'"),
        ({"priors": {"a": {"config": tiny_vit_config(), "image_mean": [0.5, 0.5]}}}, "has 2 values"),
        ({"priors": {"a": {"config": tiny_vit_config(), "feature": "cls", "num_tokens": 4}}}, "only applies to"),
        ({"landmark_loss": "huber"}, "landmark_loss must be one of"),
        ({"interocular_indices": [36, 99]}, "interocular_indices must be two landmark indices"),
        ({"fusion_mode": "priors_only", "backbone": tiny_vit_config()}, "backbone must be None"),
        ({"problem_type": "ranking"}, "problem_type"),
    ],
)
def test_wrong_settings_raise_clear_errors(overrides, message):
    with pytest.raises(Exception, match=message):
        tiny_etfuser_config(**overrides)


def test_nested_configs_are_real_pretrained_configs(tiny_config):
    for spec in tiny_config.priors.values():
        assert isinstance(spec.config, PreTrainedConfig)
    assert tiny_config.prior_names == ["clip", "convnext", "vit"]  # sorted, as config.json stores them
