"""ET-Fuser models: what transformers' ModelTesterMixin checks, on tiny random priors of three architectures
(ViT, ConvNeXt, CLIP vision), plus the ET-Fuser-specific guarantees (frozen priors, mask strategies, fusion modes)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import REPO_ROOT, tiny_etfuser_config, tiny_spatial_config, tiny_vit_config
from safetensors import safe_open
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    ViTModel,
    pipeline,
)

from etfuser_hf import (
    ETFuserForImageClassification,
    ETFuserForLandmarkDetection,
    ETFuserImageProcessor,
    ETFuserModel,
)
from etfuser_hf.models.configuration_etfuser import ATTENTION_MASK_STRATEGIES
from etfuser_hf.models.modeling_etfuser import fusion_attention_mask, token_groups

FUSION_MODES = ("prepend_token", "add_to_pooled", "concat_before_head", "priors_only", "none")
NUM_PRIOR_TOKENS = 1 + 3 + 1  # vit pooled, convnext top-3, clip cls


def seeded_model(model_class, config, seed: int = 0):
    torch.manual_seed(seed)
    return model_class(config).eval()


def assert_same_gradients(reference, other, rtol: float, atol: float) -> None:
    """The same parameters of two copies of one model received gradients, and the same ones."""
    for (name, p), q in zip(reference.named_parameters(), other.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=atol, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# shapes for every head, mask strategy and fusion mode
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion_mode", FUSION_MODES)
@pytest.mark.parametrize("strategy", ATTENTION_MASK_STRATEGIES)
def test_base_model_output_shapes(fusion_mode, strategy, pixel_values):
    config = tiny_etfuser_config(fusion_mode=fusion_mode, attention_mask_strategy=strategy, num_ensemble_tokens=2)
    model = seeded_model(ETFuserModel, config)
    outputs = model(pixel_values, output_attentions=True, output_hidden_states=True)
    expected_fused = {"prepend_token": 32, "add_to_pooled": 32, "concat_before_head": 64, "priors_only": 32, "none": 32}
    assert outputs.pooler_output.shape == (3, expected_fused[fusion_mode]) == (3, model.fused_size)
    if fusion_mode == "none":
        assert outputs.ensemble_tokens is None and len(model.priors) == 0
        return
    assert outputs.ensemble_tokens.shape == (3, 2, 32)
    assert outputs.prior_tokens.shape == (3, NUM_PRIOR_TOKENS, 32)
    assert outputs.last_hidden_state.shape == (3, 2 + NUM_PRIOR_TOKENS, 32)
    assert len(outputs.hidden_states) == config.num_hidden_layers + 1
    assert outputs.attentions[0].shape == (3, 4, 2 + NUM_PRIOR_TOKENS, 2 + NUM_PRIOR_TOKENS)
    assert outputs.prior_attention.shape == (3, 3)
    torch.testing.assert_close(outputs.prior_attention.sum(-1), torch.ones(3))


@pytest.mark.parametrize("problem_type, labels", [
    ("single_label_classification", torch.tensor([0, 4, 2])),
    ("multi_label_classification", torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]])),
    ("regression", torch.tensor([[0.5] * 5, [1.0] * 5, [2.0] * 5])),
])
def test_classification_heads_and_losses(problem_type, labels, pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config(problem_type=problem_type))
    outputs = model(pixel_values, labels=labels)
    assert outputs.logits.shape == (3, 5)
    assert outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)


def test_single_output_regression_accepts_flat_targets(pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config(num_labels=1, regression_loss="l1"))
    outputs = model(pixel_values, labels=torch.tensor([21.0, 35.0, 60.0]))
    assert outputs.logits.shape == (3, 1)
    expected = (outputs.logits.squeeze(-1) - torch.tensor([21.0, 35.0, 60.0])).abs().mean()
    torch.testing.assert_close(outputs.loss, expected)


def test_task_type_regression_bins_read_out_the_expected_value(pixel_values, tmp_path):
    """A binned regression head (the dlib age net's readout): one score per bin, `logits` the expectation of the bins
    under their softmax, (batch, 1); the loss on that value; the ensemble head over the same bins; saved and
    reloaded with its bins."""
    bins = [0.0, 10.0, 20.0, 30.0]
    config = tiny_etfuser_config(problem_type="regression", num_labels=1, regression_bins=bins, regression_loss="l1",
                                 fusion_mode="add_to_pooled", ensemble_loss_weight=1.0)
    model = seeded_model(ETFuserForImageClassification, config)
    assert model.classifier.dense.out_features == 4 and model.ensemble_head.dense.out_features == 4
    with torch.no_grad():
        model.classifier.dense.weight.zero_()
        model.classifier.dense.bias.copy_(torch.tensor([0.0, 0.0, float(np.log(2.0)), 0.0]))  # softmax 1:1:2:1
    model.eval()
    outputs = model(pixel_values, labels=torch.tensor([16.0, 16.0, 26.0]))
    expected = (0.0 + 10.0 + 2 * 20.0 + 30.0) / 5  # 16
    torch.testing.assert_close(outputs.logits, torch.full((3, 1), expected))
    torch.testing.assert_close(outputs.loss, torch.tensor(10.0 / 3))  # L1: 0, 0, 10
    model.train()
    assert torch.isfinite(model(pixel_values, labels=torch.tensor([1.0, 2.0, 3.0])).loss)
    model.save_pretrained(tmp_path)
    reloaded = ETFuserForImageClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.regression_bins == bins
    torch.testing.assert_close(reloaded(pixel_values).logits, torch.full((3, 1), expected))


@pytest.mark.parametrize("overrides, message", [
    (dict(problem_type="regression", num_labels=1, regression_bins=[1.0]), "at least two numbers"),
    (dict(problem_type="regression", num_labels=1, regression_bins=[1.0, "x"]), "at least two numbers"),
    (dict(problem_type="single_label_classification", num_labels=3, regression_bins=[0.0, 1.0]),
     "need problem_type='regression' and num_labels=1"),
])
def test_task_type_regression_bins_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_etfuser_config(**overrides)


def test_landmark_head_outputs_normalised_points_and_nme(pixel_values):
    model = seeded_model(ETFuserForLandmarkDetection, tiny_etfuser_config(landmark_loss="wing"))
    target = torch.rand(3, 68, 2)
    outputs = model(pixel_values, labels=target)
    assert outputs.landmarks.shape == (3, 68, 2)
    assert outputs.landmarks.min() >= 0 and outputs.landmarks.max() <= 1
    assert outputs.nme.shape == (3,)
    interocular = (target[:, 36] - target[:, 45]).norm(dim=-1)
    expected = (outputs.landmarks - target).norm(dim=-1).mean(-1) / interocular
    torch.testing.assert_close(outputs.nme, expected)


def test_mask_strategies_define_who_reads_whom(tiny_config):
    config = copy.deepcopy(tiny_config)
    groups = torch.tensor(token_groups(config))
    assert groups.tolist() == [0, 1, 2, 2, 2, 3]
    config.attention_mask_strategy = "ensemble_reads_priors"
    allowed = fusion_attention_mask(config, torch.float32, torch.device("cpu"))[0, 0] == 0
    assert allowed[0].all()  # the ensemble token reads every prior
    assert allowed[1, 0] and not allowed[1, 2]  # prior tokens read the ensemble, not other priors
    assert allowed[2:5, 2:5].all()  # tokens of one prior read each other
    config.attention_mask_strategy = "isolated"
    allowed = fusion_attention_mask(config, torch.float32, torch.device("cpu"))[0, 0] == 0
    assert allowed[0].all() and not allowed[1, 0] and not allowed[1, 2] and allowed[1, 1]


def test_isolated_priors_do_not_see_each_other(pixel_values):
    """Under `isolated`, changing one prior's input features leaves the other priors' fused tokens untouched."""
    model = seeded_model(ETFuserModel, tiny_etfuser_config(attention_mask_strategy="isolated"))
    features = model.extract_prior_features(pixel_values)
    changed = dict(features, vit=features["vit"] + 1.0)
    before, after = model(pixel_values, prior_features=features), model(pixel_values, prior_features=changed)
    vit_token = token_groups(model.config).index(list(model.config.priors).index("vit") + 1)
    assert not torch.allclose(before.last_hidden_state[:, vit_token], after.last_hidden_state[:, vit_token])
    others = [i for i in range(1, before.last_hidden_state.shape[1]) if i != vit_token]
    torch.testing.assert_close(before.last_hidden_state[:, others], after.last_hidden_state[:, others])
    assert not torch.allclose(before.ensemble_tokens, after.ensemble_tokens)


# ----------------------------------------------------------------------------------------------------------------------
# save / load, Auto classes, remote code, single safetensors file
# ----------------------------------------------------------------------------------------------------------------------


def test_save_then_load_in_a_fresh_process_through_automodel(tmp_path, pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config())
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    torch.save(pixel_values, tmp_path / "inputs.pt")
    expected = model(pixel_values).logits
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(REPO_ROOT / 'src')!r})
        import etfuser_hf
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path)!r}, dtype=torch.float32).eval()
        assert type(model).__name__ == "ETFuserForImageClassification", type(model)
        inputs = torch.load({str(tmp_path / 'inputs.pt')!r}, weights_only=True)
        torch.save(model(inputs).logits, {str(tmp_path / 'out.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    reloaded = torch.load(tmp_path / "out.pt", weights_only=True)
    assert (reloaded - expected).abs().max() <= 1e-5


def test_base_model_loads_into_head_model_and_back(tmp_path, pixel_values):
    base = seeded_model(ETFuserModel, tiny_etfuser_config())
    base.save_pretrained(tmp_path)
    head = ETFuserForImageClassification.from_pretrained(tmp_path, dtype=torch.float32).eval()
    torch.testing.assert_close(head.etfuser(pixel_values).pooler_output, base(pixel_values).pooler_output)
    assert isinstance(AutoModel.from_pretrained(tmp_path), ETFuserModel)


@pytest.mark.parametrize("make_config", [tiny_etfuser_config, lambda: tiny_spatial_config("canonical_tokens")],
                         ids=["pooled", "spatial-grid"])
def test_trust_remote_code_load_without_the_package(tmp_path, pixel_values, make_config):
    model = seeded_model(ETFuserForImageClassification, make_config())
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForImageClassification"] == "modeling_etfuser.ETFuserForImageClassification"
    # every module the remote-code set imports relatively is copied (custom_object_save follows the relative imports)
    assert {"fusion_modes.py", "input_checks.py", "losses.py", "encoders.py"} <= {p.name for p in folder.glob("*.py")}
    labels = torch.arange(pixel_values.shape[0]) % model.config.num_labels
    torch.save({"pixel_values": pixel_values, "labels": labels}, tmp_path / "inputs.pt")
    script = textwrap.dedent(f"""
        import importlib.abc, sys, torch

        class HidePackage(importlib.abc.MetaPathFinder):
            # stands in for a machine without etfuser_hf, also where CI installed it (pip install -e .)
            def find_spec(self, name, path=None, target=None):
                if name == "etfuser_hf" or name.startswith("etfuser_hf."):
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, HidePackage())
        try:
            import etfuser_hf
            raise AssertionError("the package must not be importable here")
        except ModuleNotFoundError:
            pass
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
        folder = {str(folder)!r}
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(processor).__name__ == "ETFuserImageProcessor", type(processor)
        inputs = torch.load({str(tmp_path / 'inputs.pt')!r}, weights_only=True)
        outputs = model.eval()(**inputs)  # the loss (losses.py) and the input checks (input_checks.py) run here
        try:
            model(inputs["pixel_values"] * 1e30)
            raise AssertionError("huge pixel values must be refused")
        except ValueError as error:
            assert "largest 16-bit pixel value" in str(error), error
        torch.save({{"logits": outputs.logits, "loss": outputs.loss}}, {str(tmp_path / 'remote.pt')!r})
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    # without PYTHONPATH the repository's src/ is not on the path; an installed copy is hidden by the finder above
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    remote = torch.load(tmp_path / "remote.pt", weights_only=True)
    local = model(pixel_values, labels=labels)
    assert (remote["logits"] - local.logits).abs().max() <= 1e-5
    torch.testing.assert_close(remote["loss"], local.loss, rtol=1e-5, atol=1e-6)


def test_from_priors_pretrained_assembles_one_self_contained_checkpoint(tmp_path, pixel_values):
    torch.manual_seed(1)
    prior = ViTModel(tiny_vit_config())
    prior.save_pretrained(tmp_path / "prior_a")
    ETFuserImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.1, 0.2, 0.3], image_std=[0.9, 0.8, 0.7],
                          do_normalize=True).save_pretrained(tmp_path / "prior_a")
    backbone = ViTModel(tiny_vit_config(num_hidden_layers=2))
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"a": tmp_path / "prior_a", "b": {"model": prior, "feature": "cls"}},  # the same weights twice
        backbone=backbone,
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=3,
    ).eval()
    assert model.config.priors["a"].image_mean == pytest.approx([0.1, 0.2, 0.3])
    for name in ("a", "b"):
        torch.testing.assert_close(model.etfuser.priors[name].embeddings.cls_token, prior.embeddings.cls_token)
    torch.testing.assert_close(model.etfuser.backbone.pooler.dense.weight, backbone.pooler.dense.weight)
    model.save_pretrained(tmp_path / "fused")  # raises on shared tensors
    with safe_open(tmp_path / "fused" / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert any(k.startswith("etfuser.priors.a.") for k in keys) and any(k.startswith("etfuser.priors.b.") for k in keys)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "fused", dtype=torch.float32).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits)


# ----------------------------------------------------------------------------------------------------------------------
# numerics: determinism, batching, eager vs SDPA, checkpointing, bf16, export
# ----------------------------------------------------------------------------------------------------------------------


def test_determinism_and_batch_of_one_equivalence(pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config())
    first, second = model(pixel_values).logits, model(pixel_values).logits
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    one_by_one = torch.cat([model(pixel_values[i : i + 1]).logits for i in range(3)])
    torch.testing.assert_close(one_by_one, first, rtol=1e-5, atol=1e-5)
    rebuilt = seeded_model(ETFuserForImageClassification, tiny_etfuser_config())
    torch.testing.assert_close(rebuilt(pixel_values).logits, first, rtol=0, atol=0)


@pytest.mark.parametrize("strategy", ATTENTION_MASK_STRATEGIES)
def test_eager_and_sdpa_agree(strategy, pixel_values):
    config = tiny_etfuser_config(attention_mask_strategy=strategy)
    sdpa = seeded_model(ETFuserForImageClassification, copy.deepcopy(config))
    eager = copy.deepcopy(sdpa)
    eager.config._attn_implementation = "eager"
    assert sdpa.config._attn_implementation == "sdpa"
    torch.testing.assert_close(sdpa(pixel_values).logits, eager(pixel_values).logits, rtol=1e-5, atol=1e-5)


def test_frozen_priors_do_not_change_after_an_optimiser_step(pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config()).train()
    assert all(not prior.training for prior in model.etfuser.priors.values())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model(pixel_values, labels=torch.tensor([0, 1, 2])).loss.backward()
    optimiser.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert not any(name.startswith("etfuser.priors.") for name in changed)
    assert any(name.startswith("etfuser.fusion.") for name in changed)
    assert "etfuser.embeddings.ensemble_tokens" in changed
    assert "classifier.dense.weight" in changed and any(n.startswith("etfuser.backbone.") for n in changed)
    assert all(p.grad is None for p in model.etfuser.priors.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(pixel_values):
    labels = torch.tensor([0, 1, 2])
    reference = seeded_model(ETFuserForImageClassification, tiny_etfuser_config()).train()
    checkpointed = copy.deepcopy(reference)
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in checkpointed.etfuser.fusion.layers)
    for model in (reference, checkpointed):
        model(pixel_values, labels=labels).loss.backward()
    assert_same_gradients(reference, checkpointed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("strategy", ATTENTION_MASK_STRATEGIES)
@pytest.mark.parametrize("make_config", [tiny_etfuser_config, tiny_spatial_config], ids=["pooled", "spatial"])
def test_task_heads_update_only_the_ensemble_tokens_in_the_last_fusion_layer(implementation, strategy, make_config,
                                                                             pixel_values):
    """The heads read only the ensemble tokens, so the last layer computes only their rows: same outputs and
    gradients as the whole sequence (which asking for hidden states still computes), fewer rows through its MLP.
    Both attention paths (the recipe runs eager on CPU)."""
    config = make_config(attention_mask_strategy=strategy, num_hidden_layers=2)
    config._attn_implementation = implementation
    labels = torch.tensor([0, 1, 2])
    light = seeded_model(ETFuserForImageClassification, config).train()
    full = copy.deepcopy(light)
    rows = []
    light.etfuser.fusion.layers[-1].mlp.register_forward_hook(lambda module, args, out: rows.append(out.shape[1]))
    light_out = light(pixel_values, labels=labels)
    full_out = full(pixel_values, labels=labels, output_hidden_states=True)
    sequence_length = full_out.hidden_states[-1].shape[1]
    assert rows == [config.num_ensemble_tokens] and sequence_length > config.num_ensemble_tokens
    torch.testing.assert_close(light_out.logits, full_out.logits, rtol=1e-5, atol=1e-6)
    light_out.loss.backward()
    full_out.loss.backward()
    assert_same_gradients(light, full, rtol=1e-4, atol=1e-6)


def test_the_base_model_returns_the_whole_fusion_sequence_unless_asked_for_the_ensemble_tokens(pixel_values):
    config = tiny_etfuser_config()
    model = seeded_model(ETFuserModel, config)
    whole = model(pixel_values)
    light = model(pixel_values, ensemble_tokens_only=True)
    assert whole.last_hidden_state.shape[1] > config.num_ensemble_tokens
    assert light.last_hidden_state.shape == (3, config.num_ensemble_tokens, config.hidden_size)
    torch.testing.assert_close(light.ensemble_tokens, whole.ensemble_tokens, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(light.pooler_output, whole.pooler_output, rtol=1e-5, atol=1e-6)
    for request in (dict(output_hidden_states=True), dict(output_hidden_states=0), dict(output_attentions=True)):
        asked = model(pixel_values, ensemble_tokens_only=True, **request)
        assert asked.last_hidden_state.shape == whole.last_hidden_state.shape, request


def test_bf16_autocast_forward_and_backward(pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config()).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(pixel_values, labels=torch.tensor([0, 1, 2]), output_attentions=True)
    assert torch.isfinite(outputs.loss) and outputs.logits.dtype == torch.bfloat16
    outputs.loss.backward()
    assert model.etfuser.embeddings.ensemble_tokens.grad is not None


def test_torch_export_of_the_classification_model(pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config())
    exported = torch.export.export(model, args=(pixel_values,))
    torch.testing.assert_close(exported.module()(pixel_values).logits, model(pixel_values).logits)


def test_cached_prior_features_reproduce_the_full_forward(pixel_values):
    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config())
    features = model.etfuser.extract_prior_features(pixel_values)
    assert features["convnext"].shape == (3, 3, 16) and features["clip"].shape == (3, 1, 32)
    torch.testing.assert_close(model(pixel_values, prior_features=features).logits, model(pixel_values).logits)


# ----------------------------------------------------------------------------------------------------------------------
# PEFT, pipeline, image processor
# ----------------------------------------------------------------------------------------------------------------------


def test_peft_lora_on_backbone_and_fusion_attention(tmp_path, pixel_values):
    from peft import LoraConfig, PeftModel, get_peft_model

    model = seeded_model(ETFuserForImageClassification, tiny_etfuser_config())
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*etfuser\.(backbone|fusion)\..*\.(query|value|q_proj|v_proj)",
        modules_to_save=["classifier"], init_lora_weights=False,
    )
    peft_model = get_peft_model(copy.deepcopy(model), lora)
    names = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert any(".backbone." in n and "lora_" in n for n in names)
    assert any(".fusion." in n and "lora_" in n for n in names)
    assert not any(".priors." in n for n in names)
    expected = peft_model(pixel_values).logits
    assert not torch.allclose(expected, model(pixel_values).logits)
    peft_model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    reloaded = PeftModel.from_pretrained(copy.deepcopy(model), tmp_path).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, expected)
    merged = reloaded.merge_and_unload()
    torch.testing.assert_close(merged(pixel_values).logits, expected, rtol=1e-4, atol=1e-5)


def test_image_classification_pipeline_returns_labelled_scores(tmp_path):
    labels = ["angry", "disgust", "fear", "happy", "sad"]
    config = tiny_etfuser_config(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    seeded_model(ETFuserForImageClassification, config).save_pretrained(tmp_path)
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    classifier = pipeline("image-classification", model=str(tmp_path))
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    predictions = classifier(image, top_k=5)
    assert {p["label"] for p in predictions} == set(labels)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)


def test_pipeline_on_the_quick_start_folder_never_asks_to_run_custom_code(tmp_path, monkeypatch):
    """The README quick start's folder (`from_priors_pretrained` with a saved ViT prior, ETFuserImageProcessor beside
    it). The pipeline also probes for a video processor; with the package imported that probe must resolve locally,
    not ask "Do you wish to run the custom code? [y/N]" (which blocks a notebook)."""
    torch.manual_seed(0)
    ViTModel(tiny_vit_config()).save_pretrained(tmp_path / "prior")
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"identity": tmp_path / "prior"}, backbone=tiny_vit_config(num_hidden_layers=2), image_size=32,
        num_labels=3, hidden_size=32, num_attention_heads=4, intermediate_size=64, fusion_mode="prepend_token")
    model.save_pretrained(tmp_path / "et-fuser")
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "et-fuser")
    questions = []

    def no_questions(prompt: str = "") -> str:
        # recorded as well as raised: the pipeline swallows a failing optional component, the error alone would pass
        questions.append(prompt)
        raise AssertionError(f"input() was called: {prompt}")

    monkeypatch.setattr("builtins.input", no_questions)
    classifier = pipeline("image-classification", model=str(tmp_path / "et-fuser"))
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    predictions = classifier(image, top_k=3)
    assert questions == []
    assert {p["label"] for p in predictions} == {"LABEL_0", "LABEL_1", "LABEL_2"}
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)


def test_image_processor_accepts_every_common_input(tmp_path):
    processor = ETFuserImageProcessor(size={"height": 32, "width": 32})
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    inputs = [
        PIL.Image.fromarray(rgb),
        PIL.Image.fromarray(rgb).convert("L"),
        PIL.Image.fromarray(rgb).convert("RGBA"),
        rgb,
        rgb[..., 0],
        rgb.astype(np.float32) / 255.0,
        torch.from_numpy(rgb).permute(2, 0, 1),
        np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=-1),
    ]
    batch = processor(inputs, return_tensors="pt")["pixel_values"]
    assert batch.shape == (8, 3, 32, 32)
    assert batch.min() >= 0 and batch.max() <= 1
    torch.testing.assert_close(batch[3], batch[0])  # numpy and PIL agree
    torch.testing.assert_close(batch[6], batch[0])  # CHW tensor and HWC array agree
    torch.testing.assert_close(batch[5], batch[0], atol=1 / 255, rtol=0)  # float [0, 1] input
    assert torch.allclose(batch[1][0], batch[1][1])  # grey became 3 equal channels
    processor.save_pretrained(tmp_path)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(reloaded, ETFuserImageProcessor)
    torch.testing.assert_close(reloaded(inputs, return_tensors="pt")["pixel_values"], batch)


# ----------------------------------------------------------------------------------------------------------------------
# bad inputs: clear errors that name the argument
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_model():
    return seeded_model(ETFuserForImageClassification, tiny_etfuser_config())


@pytest.mark.parametrize("call, error, message", [
    (lambda m: m(torch.rand(2, 32, 32)), ValueError, r"pixel_values must have shape \(batch, 3, height, width\)"),
    (lambda m: m(torch.rand(2, 1, 32, 32)), ValueError, r"pixel_values must have shape"),
    (lambda m: m(torch.randint(0, 255, (2, 3, 32, 32))), ValueError, "pixel_values must be a float tensor"),
    (lambda m: m(np.zeros((2, 3, 32, 32), np.float32)), TypeError, "pixel_values must be a torch.Tensor"),
    (lambda m: m(None), ValueError, "pixel_values is required"),
    (lambda m: m(torch.rand(2, 3, 32, 32), labels=torch.tensor([0, 7])), ValueError, r"class ids in \[0, 5\)"),
    (lambda m: m(torch.rand(2, 3, 32, 32), labels=torch.tensor([0.5, 1.0])), ValueError, "multi-hot of shape"),
    (lambda m: m(torch.rand(2, 3, 32, 32), prior_features={"vit": torch.rand(2, 1, 32)}), ValueError,
     r"prior_features is missing priors \['clip', 'convnext'\]"),
    (lambda m: m(torch.rand(2, 3, 32, 32), prior_features=[torch.rand(2, 1, 32)]), TypeError,
     "prior_features must be a dict prior name -> tensor"),
    (lambda m: m(torch.rand(2, 3, 32, 32), prior_features={"vit": torch.rand(2, 1, 99), "clip": torch.rand(2, 1, 32),
                                                           "convnext": torch.rand(2, 3, 16)}), ValueError,
     r"prior_features\['vit'\] must have shape \(batch, 1, 32\) .*got \(2, 1, 99\)"),
    (lambda m: m(torch.rand(2, 3, 32, 32), prior_features={"vit": torch.rand(2, 1, 32), "clip": torch.rand(3, 1, 32),
                                                           "convnext": torch.rand(2, 3, 16)}), ValueError,
     r"prior_features: every prior needs the same batch size, got \[2, 3\]"),
    (lambda m: m(torch.rand(3, 3, 32, 32), prior_features={"vit": torch.rand(2, 1, 32), "clip": torch.rand(2, 1, 32),
                                                           "convnext": torch.rand(2, 3, 16)}), ValueError,
     "prior_features hold 2 images but pixel_values 3"),
])
def test_bad_model_inputs_raise_clear_errors(classifier_model, call, error, message):
    with pytest.raises(error, match=message):
        call(classifier_model)


@pytest.mark.parametrize("images, error, message", [
    (None, ValueError, "expected an image or a list of images"),
    ([], ValueError, "empty list"),
    ("face.jpg", TypeError, "Load file paths with PIL.Image.open"),
    (np.zeros((8, 8, 5), np.uint8), ValueError, "expected 1 \\(grey\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels"),
    (np.zeros((2, 4, 4, 3), np.uint8), ValueError, r"expected an image of shape"),
    (np.zeros((4, 4, 3), np.int64), ValueError, "expected uint8"),
    ([np.zeros((4, 4, 3), np.uint8), 3], TypeError, r"images\[1\]: expected a PIL.Image"),
])
def test_bad_images_raise_clear_errors(images, error, message):
    with pytest.raises(error, match=message):
        ETFuserImageProcessor(size={"height": 32, "width": 32})(images, return_tensors="pt")


def test_prepend_token_needs_a_token_backbone():
    from transformers import ConvNextConfig

    with pytest.raises(ValueError, match="fusion_mode='prepend_token' needs a token-sequence backbone"):
        ETFuserModel(tiny_etfuser_config(backbone=ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)))
    model = ETFuserModel(tiny_etfuser_config(
        fusion_mode="add_to_pooled", backbone=ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)))
    assert model(torch.rand(1, 3, 32, 32)).pooler_output.shape == (1, 16)


def test_from_priors_pretrained_rejects_bad_sources():
    with pytest.raises(TypeError, match="priors: expected a mapping"):
        ETFuserForImageClassification.from_priors_pretrained(priors=["a"])
    with pytest.raises(ValueError, match=r"priors\['a'\]: a dict entry needs a 'model' key"):
        ETFuserForImageClassification.from_priors_pretrained(priors={"a": {"feature": "cls"}})
    with pytest.raises(TypeError, match=r"priors\['a'\]: expected a path"):
        ETFuserForImageClassification.from_priors_pretrained(priors={"a": 3})
