"""`read_only_priors`: the prior tokens (and canonical tokens) are keys and values only, the ensemble tokens the only
queries of every fusion layer (issue 34, item 6: the fusion cost of grid tokens)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_etfuser_config, tiny_spatial_config

from etfuser_hf import (
    ETFuserConfig,
    ETFuserForImageClassification,
    ETFuserForMultiTaskFaceAnalysis,
    ETFuserModel,
)
from etfuser_hf.analysis.attention_maps import grid_attention
from etfuser_hf.hub.export import export_onnx, verify_onnx
from etfuser_hf.models.modeling_etfuser import ETFuserAttention, attention_over_priors

# (config builder, its fusion sequence: ensemble tokens + prior tokens (+ canonical tokens))
SETTINGS = {
    "pooled prepend": (lambda **kw: tiny_etfuser_config(**kw), 1 + 5),
    "grid add": (lambda **kw: tiny_spatial_config("add_to_pooled", grid_size=2, **kw), 1 + 2 * 4),
    "grid canonical": (lambda **kw: tiny_spatial_config("canonical_tokens", grid_size=2, **kw), 1 + 2 * 4 + 4),
}


def seeded(model_class, config, seed: int = 0):
    torch.manual_seed(seed)
    return model_class(config).eval()


def opened_gate(model) -> None:
    """The zero-initialised gate opened, so the ensemble token counts in the logits."""
    with torch.no_grad():
        if model.base_model.fusion_gate is not None:
            model.base_model.fusion_gate.fill_(0.5)


@pytest.mark.parametrize("setting", SETTINGS)
def test_eager_and_sdpa_agree_with_read_only_priors(setting, pixel_values):
    make_config, _ = SETTINGS[setting]
    sdpa = seeded(ETFuserForImageClassification, make_config(read_only_priors=True, num_hidden_layers=3))
    opened_gate(sdpa)
    eager = copy.deepcopy(sdpa)
    eager.set_attn_implementation("eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    torch.testing.assert_close(sdpa(pixel_values).logits, eager(pixel_values).logits, rtol=1e-5, atol=1e-5)
    ensemble = [model.etfuser(pixel_values).ensemble_tokens for model in (sdpa, eager)]
    torch.testing.assert_close(*ensemble, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("setting", SETTINGS)
def test_prior_tokens_pass_the_stack_unchanged_and_only_the_ensemble_tokens_attend(setting, pixel_values):
    make_config, length = SETTINGS[setting]
    model = seeded(ETFuserModel, make_config(read_only_priors=True, num_hidden_layers=3))
    outputs = model(pixel_values, output_hidden_states=True, output_attentions=True)
    first = outputs.hidden_states[0]
    assert len(outputs.hidden_states) == 4 and all(state.shape == (3, length, 32) for state in outputs.hidden_states)
    for state in outputs.hidden_states[1:]:
        torch.testing.assert_close(state[:, 1:], first[:, 1:], rtol=0, atol=0)  # bit for bit: never updated
        assert not torch.allclose(state[:, :1], first[:, :1])  # the ensemble token is
    assert [tuple(weights.shape) for weights in outputs.attentions] == [(3, 4, 1, length)] * 3
    torch.testing.assert_close(outputs.attentions[-1].sum(dim=-1), torch.ones(3, 4, 1))
    torch.testing.assert_close(outputs.prior_attention, attention_over_priors(outputs.attentions[-1], model.config))
    torch.testing.assert_close(outputs.prior_attention.sum(dim=-1), torch.ones(3))
    # what the heads read is the same with and without the calls' extra outputs
    torch.testing.assert_close(model(pixel_values, ensemble_tokens_only=True).ensemble_tokens, outputs.ensemble_tokens)


def test_one_read_only_layer_equals_one_full_layer_and_more_layers_differ(pixel_values):
    """In the first layer the ensemble token reads the fusion input either way; from the second on, the full stack's
    prior tokens have been updated and the read-only ones have not."""
    for layers, same in ((1, True), (2, False)):
        full = seeded(ETFuserModel, tiny_spatial_config("canonical_tokens", num_hidden_layers=layers))
        read_only = copy.deepcopy(full)
        read_only.config.read_only_priors = True
        tokens = [model(pixel_values).ensemble_tokens for model in (full, read_only)]
        assert torch.allclose(*tokens, rtol=1e-5, atol=1e-6) is same


def unfolded_read_only_attention(self, hidden_states, output_attentions, num_queries):
    """The reference of `ETFuserAttention._read_only_forward`: every token projected to its keys and values."""
    batch, length, width = hidden_states.shape
    heads = width // self.head_dim
    query = self.q_proj(hidden_states[:, :num_queries]).view(batch, num_queries, heads, -1).transpose(1, 2)
    key, value = (projection(hidden_states).view(batch, length, heads, -1).transpose(1, 2)
                  for projection in (self.k_proj, self.v_proj))
    weights = torch.softmax(query @ key.transpose(2, 3) * self.scaling, dim=-1)
    weights = torch.nn.functional.dropout(weights, p=self.attention_dropout, training=self.training)
    output = (weights @ value).transpose(1, 2).reshape(batch, num_queries, width)
    return self.o_proj(output), weights


@pytest.mark.parametrize("qkv_bias", [True, False])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_the_folded_attention_equals_projecting_every_token(monkeypatch, qkv_bias, implementation, pixel_values):
    """Keys and values folded into the queries give what projecting every token gives, dropout included (the same
    random draws: the attention weights have the same shape either way)."""
    model = seeded(ETFuserForImageClassification, tiny_spatial_config(
        "canonical_tokens", read_only_priors=True, num_hidden_layers=3, qkv_bias=qkv_bias,
        attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.1)).train()
    model.set_attn_implementation({"": implementation})
    opened_gate(model)
    labels = torch.tensor([0, 1, 2])
    results = []
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(ETFuserAttention, "_read_only_forward", unfolded_read_only_attention)
        torch.manual_seed(1)
        loss = model(pixel_values, labels=labels).loss
        loss.backward()
        gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), gradients))
        model.zero_grad()
    (folded_loss, folded), (loss, unfolded) = results
    torch.testing.assert_close(folded_loss, loss, rtol=1e-5, atol=1e-6)
    assert folded.keys() == unfolded.keys() and any("k_proj" in name for name in folded)
    for name in folded:
        torch.testing.assert_close(folded[name], unfolded[name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradients_reach_every_projection_and_the_canonical_model(pixel_values):
    model = seeded(ETFuserForImageClassification, tiny_spatial_config(
        "canonical_tokens", read_only_priors=True, ensemble_loss_weight=1.0)).train()
    opened_gate(model)
    model(pixel_values, labels=torch.tensor([0, 1, 2])).loss.backward()
    base = model.etfuser
    projections = {**base.embeddings.projections, "canonical": base.embeddings.canonical_projection}
    for name, projection in projections.items():
        for parameter_name, parameter in projection.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, (name, parameter_name)
    for index, layer in enumerate(base.fusion.layers):  # the keys and values of the read-only tokens are trained
        for part in ("k_proj", "v_proj", "q_proj", "o_proj"):
            assert getattr(layer.attention, part).weight.grad.abs().sum() > 0, (index, part)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in base.backbone.parameters())
    assert all(parameter.grad is None for parameter in base.priors.parameters())  # the priors stay frozen


def test_gradient_checkpointing_gives_the_same_gradients_with_read_only_priors(pixel_values):
    reference = seeded(ETFuserForImageClassification, tiny_spatial_config(read_only_priors=True)).train()
    opened_gate(reference)
    checkpointed = copy.deepcopy(reference)
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for model in (reference, checkpointed):
        model(pixel_values, labels=torch.tensor([0, 1, 2])).loss.backward()
    for (name, p), q in zip(reference.named_parameters(), checkpointed.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_read_only_priors_round_trip_through_save_and_load(tmp_path, pixel_values):
    model = seeded(ETFuserForImageClassification, tiny_spatial_config("canonical_tokens", read_only_priors=True))
    opened_gate(model)
    model.save_pretrained(tmp_path / "model")
    reloaded = ETFuserForImageClassification.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
    assert reloaded.config.read_only_priors is True
    torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits)
    # a folder saved before the option existed reloads as the full stack, today's behaviour
    config = ETFuserConfig.from_pretrained(tmp_path / "model").to_dict()
    del config["read_only_priors"]
    assert ETFuserConfig.from_dict(config).read_only_priors is False
    assert ETFuserConfig().read_only_priors is False


def test_the_attention_maps_read_the_ensemble_rows_of_a_read_only_model(pixel_values):
    model = seeded(ETFuserForImageClassification, tiny_spatial_config("canonical_tokens", read_only_priors=True))
    maps = grid_attention(model, pixel_values)
    assert set(maps) == {"fer", "vit", "canonical"}
    for grid in maps.values():
        assert grid.shape == (3, 2, 2)
        torch.testing.assert_close(torch.from_numpy(grid).sum(dim=(1, 2)), torch.ones(3))


def test_a_read_only_spatial_model_exports_to_onnx(tmp_path):
    model = seeded(ETFuserForImageClassification, tiny_spatial_config("canonical_tokens", grid_size=3,
                                                                     read_only_priors=True))
    opened_gate(model)
    path = export_onnx(model, tmp_path / "read_only.onnx")
    assert verify_onnx(model, path, batch_sizes=(1, 3)) <= 1e-4


@pytest.mark.parametrize("settings, message", [
    ({"read_only_priors": 1}, "read_only_priors must be a bool, got 1"),
    ({"read_only_priors": True, "fusion_mode": "concat_priors"}, "fusion_mode='concat_priors' does not have"),
    ({"read_only_priors": True, "fusion_mode": "none"}, "fusion_mode='none' does not have"),
    ({"read_only_priors": True, "attention_mask_strategy": "isolated"},
     "read_only_priors=True needs attention_mask_strategy='full', got 'isolated'"),
])
def test_bad_read_only_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_spatial_config(**settings)


def test_the_multitask_model_reads_the_read_only_fusion_sequence(pixel_values):
    """The multi-task branches cross-attend to the whole fusion output: with read-only priors its prior positions are
    the projected prior tokens, normed, and the branches train through them into the projections."""
    tasks = {"expression": {"problem_type": "single_label_classification", "num_labels": 7},
             "age": {"problem_type": "regression", "num_labels": 1, "loss": "l1"}}
    model = seeded(ETFuserForMultiTaskFaceAnalysis, tiny_etfuser_config(tasks=tasks, read_only_priors=True)).train()
    fusion = model.etfuser(pixel_values, output_hidden_states=True)
    torch.testing.assert_close(fusion.last_hidden_state[:, 1:],
                               model.etfuser.fusion.layernorm(fusion.hidden_states[0][:, 1:]))
    outputs = model(pixel_values, labels={"expression": torch.tensor([0, 3, 6]), "age": torch.rand(3, 1)})
    outputs.loss.backward()
    projections = model.etfuser.embeddings.projections.values()
    assert all(projection.dense.weight.grad.abs().sum() > 0 for projection in projections)
