"""ET-Fuser behaves like a library model (issue 12): sub-configs and attention dispatch per part, output capture,
canonical saved key names, complete weight init, and a pipeline that never asks about custom code."""

from __future__ import annotations

import builtins
import copy
from unittest import mock

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_etfuser_config
from safetensors.torch import load_file, save_file
from transformers import ViTModel, pipeline
from transformers.modeling_utils import AttentionInterface

from etfuser_hf import ETFuserConfig, ETFuserForImageClassification, ETFuserImageProcessor, ETFuserModel

SUB_CONFIGS = ["backbone_config", "clip_prior_config", "convnext_prior_config", "vit_prior_config"]


def seeded(model_class, config, seed: int = 0):
    torch.manual_seed(seed)
    return model_class(config).eval()


def implementations(model: ETFuserForImageClassification) -> dict[str, str]:
    base = model.etfuser
    parts = {"fusion": model.config, "backbone": base.backbone.config}
    parts.update({name: prior.config for name, prior in base.priors.items()})
    return {part: config._attn_implementation for part, config in parts.items()}


def sdpa_callers(model: ETFuserForImageClassification, pixel_values: torch.Tensor) -> set[str]:
    """The parts (fusion, backbone, each prior) whose attention layers ran through SDPA in one forward."""
    base = model.etfuser
    owners = {id(module): "fusion" for module in base.fusion.modules()}
    owners.update({id(module): "backbone" for module in base.backbone.modules()})
    for name, prior in base.priors.items():
        owners.update({id(module): name for module in prior.modules()})
    sdpa = AttentionInterface._global_mapping["sdpa"]
    callers = set()

    def recording_sdpa(module, *args, **kwargs):
        callers.add(owners[id(module)])
        return sdpa(module, *args, **kwargs)

    with mock.patch.dict(AttentionInterface._global_mapping, {"sdpa": recording_sdpa}), torch.no_grad():
        model(pixel_values)
    return callers


# --- sub-configs and attention dispatch --------------------------------------------------------------------------


def test_sub_configs_name_every_encoder_config():
    config = tiny_etfuser_config()
    assert sorted(config.sub_configs) == SUB_CONFIGS
    assert config.backbone_config is config.backbone.config
    assert config.vit_prior_config is config.priors["vit"].config
    assert sorted(tiny_etfuser_config(fusion_mode="none").sub_configs) == ["backbone_config"]  # no prior is built
    assert sorted(tiny_etfuser_config(fusion_mode="priors_only").sub_configs) == SUB_CONFIGS[1:]
    with pytest.raises(AttributeError, match="no attribute 'nose_prior_config'"):
        config.nose_prior_config


def test_each_sub_config_round_trips_through_the_saved_folder(tmp_path):
    config = tiny_etfuser_config()
    config.save_pretrained(tmp_path)
    loaded = ETFuserConfig.from_pretrained(tmp_path)
    for key, config_class in config.sub_configs.items():
        assert type(getattr(loaded, key)) is config_class
        assert getattr(loaded, key).to_diff_dict() == getattr(config, key).to_diff_dict()


def test_set_attn_implementation_reaches_every_part_and_sdpa_runs_in_each(pixel_values):
    model = seeded(ETFuserForImageClassification, tiny_etfuser_config())
    model.set_attn_implementation("eager")
    assert implementations(model) == dict.fromkeys(["fusion", "backbone", "clip", "convnext", "vit"], "eager")
    assert sdpa_callers(model, pixel_values) == set()
    expected = model(pixel_values).logits
    model.set_attn_implementation("sdpa")
    # ConvNeXt has no attention layers (and so no SDPA): it stays eager rather than refusing the whole model
    assert implementations(model) == {"fusion": "sdpa", "backbone": "sdpa", "clip": "sdpa", "convnext": "eager",
                                      "vit": "sdpa"}
    assert sdpa_callers(model, pixel_values) == {"fusion", "backbone", "clip", "vit"}
    torch.testing.assert_close(model(pixel_values).logits, expected, rtol=1e-4, atol=1e-5)
    model.set_attn_implementation({"vit_prior_config": "eager"})  # a dict targets the parts it names
    assert sdpa_callers(model, pixel_values) == {"fusion", "backbone", "clip"}


def test_from_pretrained_attn_implementation_reaches_every_part(tmp_path, pixel_values):
    seeded(ETFuserForImageClassification, tiny_etfuser_config()).save_pretrained(tmp_path)
    eager = ETFuserForImageClassification.from_pretrained(tmp_path, attn_implementation="eager")
    assert set(implementations(eager).values()) == {"eager"} and sdpa_callers(eager, pixel_values) == set()
    sdpa = ETFuserForImageClassification.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert sdpa_callers(sdpa, pixel_values) == {"fusion", "backbone", "clip", "vit"}
    mixed = ETFuserForImageClassification.from_pretrained(
        tmp_path, attn_implementation={"": "eager", "backbone_config": "sdpa", "vit_prior_config": "eager",
                                       "clip_prior_config": "eager", "convnext_prior_config": "eager"})
    assert sdpa_callers(mixed, pixel_values) == {"backbone"}


def test_sub_models_share_the_config_objects_of_the_sub_configs():
    model = ETFuserForImageClassification(tiny_etfuser_config())
    assert model.etfuser.backbone.config is model.config.backbone_config
    for name, prior in model.etfuser.priors.items():
        assert prior.config is getattr(model.config, f"{name}_prior_config")


# --- output capture -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [ETFuserModel, ETFuserForImageClassification])
def test_output_hidden_states_selects_layers_by_index(model_class, pixel_values):
    model = seeded(model_class, tiny_etfuser_config(num_hidden_layers=3))
    full = model(pixel_values, output_hidden_states=True).hidden_states
    assert len(full) == 4 and all(state.shape == (3, 1 + 5, 32) for state in full)
    selected = model(pixel_values, output_hidden_states=[0, -1]).hidden_states
    assert len(selected) == 4 and selected[1] is None and selected[2] is None
    torch.testing.assert_close(selected[0], full[0])
    torch.testing.assert_close(selected[3], full[3])
    only = model(pixel_values, output_hidden_states=2).hidden_states
    assert [state is not None for state in only] == [False, False, True, False]
    assert model(pixel_values).hidden_states is None


def test_hidden_states_are_the_fusion_input_and_each_layer_output(pixel_values):
    model = seeded(ETFuserModel, tiny_etfuser_config())
    outputs = model(pixel_values, output_hidden_states=True, output_attentions=True)
    fusion_input, _ = model.embeddings(model.extract_prior_features(pixel_values), 3)
    torch.testing.assert_close(outputs.hidden_states[0], fusion_input)
    # the last one is the last layer's output, before the final LayerNorm that gives last_hidden_state
    torch.testing.assert_close(model.fusion.layernorm(outputs.hidden_states[-1]), outputs.last_hidden_state)
    assert len(outputs.attentions) == 2 and outputs.attentions[0].shape == (3, 4, 6, 6)
    assert outputs.prior_attention.shape == (3, 3)


def test_return_dict_false_gives_the_documented_tuple_order(pixel_values):
    model = seeded(ETFuserForImageClassification, tiny_etfuser_config())
    outputs = model.etfuser(pixel_values, output_hidden_states=True)
    as_tuple = model.etfuser(pixel_values, output_hidden_states=True, return_dict=False)
    assert list(outputs.keys()) == ["last_hidden_state", "pooler_output", "ensemble_tokens", "prior_tokens",
                                    "hidden_states"]
    assert len(as_tuple) == 5 and isinstance(as_tuple[4], tuple)
    for value, expected in zip(as_tuple[:4], outputs.to_tuple()[:4]):
        torch.testing.assert_close(value, expected)
    head = model(pixel_values, labels=torch.tensor([0, 1, 2]), output_hidden_states=True, output_attentions=True,
                 return_dict=False)
    keys = list(model(pixel_values, labels=torch.tensor([0, 1, 2]), output_hidden_states=True,
                      output_attentions=True).keys())
    assert keys == ["loss", "logits", "hidden_states", "attentions", "prior_attention"] and len(head) == 5
    assert model.etfuser(pixel_values, return_dict=False)[1].shape == (3, model.etfuser.fused_size)


def test_modes_without_fusion_layers_return_no_hidden_states(pixel_values):
    for mode in ("none", "concat_priors"):
        outputs = seeded(ETFuserModel, tiny_etfuser_config(fusion_mode=mode))(pixel_values, output_hidden_states=True)
        assert outputs.hidden_states is None and "hidden_states" not in outputs


# --- saved key names ------------------------------------------------------------------------------------------------


def test_saved_keys_are_the_library_checkpoint_names_and_reload_both_ways(tmp_path, pixel_values):
    model = seeded(ETFuserForImageClassification, tiny_etfuser_config())
    model.save_pretrained(tmp_path / "head")
    saved = load_file(tmp_path / "head" / "model.safetensors")
    # the nested ViT prior is written as a ViT checkpoint names its weights (what ViTModel.save_pretrained writes)
    ViTModel(model.config.vit_prior_config).save_pretrained(tmp_path / "vit")
    vit_names = set(load_file(tmp_path / "vit" / "model.safetensors"))
    prior_names = {key.removeprefix("etfuser.priors.vit.") for key in saved if key.startswith("etfuser.priors.vit.")}
    assert prior_names == vit_names and "encoder.layer.0.attention.attention.query.weight" in prior_names
    assert set(saved) != set(model.state_dict())  # the reverse mapping did rename
    reloaded, info = ETFuserForImageClassification.from_pretrained(tmp_path / "head", output_loading_info=True)
    assert not any(info.values()), info
    torch.testing.assert_close(reloaded.eval()(pixel_values).logits, model(pixel_values).logits)
    base = ETFuserModel.from_pretrained(tmp_path / "head").eval()  # head folder -> base model
    torch.testing.assert_close(base(pixel_values).pooler_output, model.etfuser(pixel_values).pooler_output)
    base.save_pretrained(tmp_path / "base")  # base folder -> head model: only the head is new
    head, info = ETFuserForImageClassification.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.dense.bias", "classifier.dense.weight"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]


def test_load_state_dict_takes_the_saved_names_too(tmp_path, pixel_values):
    """The Trainer resumes and restores its best model with a plain load_state_dict of the saved file."""
    model = seeded(ETFuserForImageClassification, tiny_etfuser_config())
    model.save_pretrained(tmp_path)
    fresh = seeded(ETFuserForImageClassification, tiny_etfuser_config(), seed=1)
    result = fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(fresh.eval()(pixel_values).logits, model(pixel_values).logits)
    assert fresh.load_state_dict(model.state_dict()) is not None  # runtime names as before


# --- weight init ----------------------------------------------------------------------------------------------------


def own_parameter_names(model) -> list[str]:
    return [name for name, _ in model.named_parameters() if ".priors." not in name and ".backbone." not in name]


@pytest.mark.parametrize("overrides", [
    {"fusion_mode": "prepend_token", "ensemble_loss_weight": 0.5, "num_ensemble_tokens": 2},
    {"fusion_mode": "add_to_pooled"},
    {"fusion_mode": "concat_priors"},
    {"fusion_mode": "priors_only"},
    {"fusion_mode": "add_to_pooled", "auxiliary_tasks": {"jigsaw": {}, "inpainting": {}}},
], ids=lambda overrides: overrides["fusion_mode"] + ("+aux" if "auxiliary_tasks" in overrides else ""))
def test_init_weights_initialises_every_parameter(overrides):
    """Every parameter and float buffer, the model's own and the sub-models' (by their own `_init_weights`), is
    written by `initialize_weights`: none keeps the NaN it is filled with here."""
    model = ETFuserForImageClassification(tiny_etfuser_config(**overrides))
    with torch.no_grad():
        for tensor in [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]:
            tensor.fill_(float("nan"))
    for module in model.modules():
        module.__dict__.pop("_is_hf_initialized", None)
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            tensor.__dict__.pop("_is_hf_initialized", None)
    model.initialize_weights()
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if tensor.is_floating_point() and torch.isnan(tensor).any()]
    assert not left
    base = model.etfuser
    if base.fusion_gate is not None:
        assert not base.fusion_gate.any()  # closed gate: training starts from the canonical model alone
    if base.embeddings is not None:
        assert 0 < base.embeddings.ensemble_tokens.std() < 0.05  # trunc-normal, initializer_range 0.02


def test_from_pretrained_with_missing_weights_is_deterministic(tmp_path):
    model = seeded(ETFuserForImageClassification, tiny_etfuser_config(fusion_mode="add_to_pooled"))
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [key for key in weights if not key.startswith(("etfuser.priors.", "etfuser.backbone."))]
    save_file({k: v for k, v in weights.items() if k not in dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    loads = []
    for _ in range(2):
        torch.manual_seed(123)
        reloaded, info = ETFuserForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
        assert sorted(info["missing_keys"]) == sorted(dropped)
        loads.append(reloaded.state_dict())
    for key in dropped:
        torch.testing.assert_close(loads[0][key], loads[1][key], rtol=0, atol=0)
        assert torch.isfinite(loads[0][key]).all()
    assert not loads[0]["etfuser.fusion_gate"].any()
    torch.testing.assert_close(loads[0]["etfuser.embeddings.projections.vit.layernorm.weight"],
                               torch.ones(32))
    assert set(own_parameter_names(reloaded)) <= set(dropped)


def test_missing_weights_get_the_values_of_a_fresh_model(monkeypatch):
    """As transformers' test_can_init_all_missing_weights: with the init seeded per module, `from_pretrained` with no
    weights at all gives exactly the weights of `__init__`, the CLIP prior's included (its attention and MLP
    initialise their linears from the parent module)."""
    from transformers import PreTrainedModel
    from transformers.trainer_utils import set_seed

    initialize = PreTrainedModel._initialize_weights

    def seeded(self, *args, **kwargs):
        set_seed(42)
        initialize(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "_initialize_weights", seeded)
    for model_class in (ETFuserModel, ETFuserForImageClassification):
        config = tiny_etfuser_config(fusion_mode="add_to_pooled")
        from_init = model_class(copy.deepcopy(config)).state_dict()
        from_nothing = model_class.from_pretrained(None, config=copy.deepcopy(config), state_dict={}).state_dict()
        assert sorted(from_init) == sorted(from_nothing)
        assert [key for key in from_init if not torch.equal(from_init[key], from_nothing[key])] == []


# --- no custom-code prompt ------------------------------------------------------------------------------------------


def test_pipeline_never_asks_about_custom_code_when_the_package_is_imported(tmp_path):
    seeded(ETFuserForImageClassification, tiny_etfuser_config()).save_pretrained(tmp_path)
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    def refuse(prompt: str = "") -> str:
        raise AssertionError(f"asked: {prompt}")

    with mock.patch.object(builtins, "input", refuse):
        classifier = pipeline("image-classification", model=str(tmp_path))
    assert type(classifier.model) is ETFuserForImageClassification  # the package's class, not a copy from the folder
    assert type(classifier.image_processor) is ETFuserImageProcessor
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    assert len(classifier(image, top_k=2)) == 2


def test_the_class_level_sub_configs_mark_the_config_as_composite():
    # on the class no priors are known: the backbone alone, enough for checks that ask "is this config composite?"
    assert list(ETFuserConfig.sub_configs) == ["backbone_config"]
    assert list(copy.deepcopy(tiny_etfuser_config()).sub_configs) == SUB_CONFIGS
