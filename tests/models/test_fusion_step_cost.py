"""The fusion path in fewer operations (issue 34, item 6: the fusion's cost per training step) computes what it
computed before: each prior's projection with its embeddings added once, the sequence concatenated once, q/k/v (or
k/v) of a layer in one product, the eager softmax in the scores' dtype, the layers whose only queries are the ensemble
tokens folded (every layer under `read_only_priors`; the last one under `ensemble_tokens_only` from
`FOLDED_ATTENTION_MIN_TOKENS` tokens on), dropout calls left out at p = 0. Checked against the fusion written plainly
here, forward and gradients, on tiny configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_etfuser_config, tiny_spatial_config

from etfuser_hf import ETFuserForImageClassification, ETFuserModel
from etfuser_hf.models import modeling_etfuser
from etfuser_hf.models.modeling_etfuser import fusion_attention_mask


def plain_projection(projection, features: torch.Tensor) -> torch.Tensor:
    tokens = projection.layernorm(projection.dense(features)) + projection.prior_embedding
    if projection.position_embedding is not None:
        grid = projection.position_embedding
        tokens = tokens + (grid.rows + grid.columns).reshape(1, grid.grid_size**2, -1)
    return tokens


def plain_attention(attention, hidden_states, mask, num_queries):
    """Every token projected to its query, key and value; the first `num_queries` (or all) positions attend."""
    batch, length, width = hidden_states.shape
    heads = width // attention.head_dim
    queries = hidden_states if num_queries is None else hidden_states[:, :num_queries]

    def split(tensor):
        return tensor.view(batch, tensor.shape[1], heads, -1).transpose(1, 2)

    query, key, value = split(attention.q_proj(queries)), split(attention.k_proj(hidden_states)), split(
        attention.v_proj(hidden_states))
    scores = query @ key.transpose(2, 3) * attention.scaling
    if mask is not None:
        scores = scores + mask[:, :, : queries.shape[1]]
    output = (torch.softmax(scores, dim=-1) @ value).transpose(1, 2).reshape(batch, queries.shape[1], width)
    return attention.o_proj(output)


def plain_fusion(model: ETFuserModel, prior_features, ensemble_tokens_only: bool) -> torch.Tensor:
    """The fusion module's output sequence, as the pre-norm stack is written in a textbook."""
    config, embeddings = model.config, model.embeddings
    tokens = [embeddings.ensemble_tokens.expand(next(iter(prior_features.values())).shape[0], -1, -1)]
    tokens += [plain_projection(projection, prior_features[name]) for name, projection in
               embeddings.projections.items()]
    hidden_states = torch.cat(tokens, dim=1)
    mask = fusion_attention_mask(config, hidden_states.dtype, hidden_states.device)
    ensemble = config.num_ensemble_tokens
    for index, layer in enumerate(model.fusion.layers):
        last = index == len(model.fusion.layers) - 1
        num_queries = ensemble if config.read_only_priors or (ensemble_tokens_only and last) else None
        attended = plain_attention(layer.attention, layer.layernorm_before(hidden_states),
                                   None if config.read_only_priors else mask, num_queries)
        updated = hidden_states if num_queries is None else hidden_states[:, :num_queries]
        updated = updated + attended
        updated = updated + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.layernorm_after(updated))))
        if num_queries is not None and config.read_only_priors and not (ensemble_tokens_only and last):
            updated = torch.cat([updated, hidden_states[:, num_queries:]], dim=1)
        hidden_states = updated
    return model.fusion.layernorm(hidden_states)


SETTINGS = {
    "pooled": lambda **kw: tiny_etfuser_config(fusion_mode="add_to_pooled", **kw),  # 1 + 5 tokens
    "grid 2": lambda **kw: tiny_spatial_config(grid_size=2, **kw),  # 1 + 8 tokens
    "grid 3": lambda **kw: tiny_spatial_config(grid_size=3, **kw),  # 1 + 18 tokens: folded by default
}


CASES = [(setting, True, read_only, fold_from) for setting in SETTINGS for read_only in (False, True)
         for fold_from in (0, None, 10_000)]
CASES += [("grid 3", False, read_only, fold_from) for read_only in (False, True) for fold_from in (0, 10_000)]


@pytest.mark.parametrize("setting, qkv_bias, read_only, fold_from", CASES)
def test_the_fusion_equals_the_plain_computation_forward_and_gradients(monkeypatch, setting, qkv_bias, read_only,
                                                                      fold_from, pixel_values):
    """`fold_from`: `FOLDED_ATTENTION_MIN_TOKENS` (None: the default), so that both computations of the full stack's
    last layer under `ensemble_tokens_only` are checked at every length (a read-only stack folds at any)."""
    if fold_from is not None:
        monkeypatch.setattr(modeling_etfuser, "FOLDED_ATTENTION_MIN_TOKENS", fold_from)
    torch.manual_seed(0)
    model = ETFuserModel(SETTINGS[setting](qkv_bias=qkv_bias, read_only_priors=read_only,
                                           num_hidden_layers=3)).train()
    features = model.extract_prior_features(pixel_values)
    for ensemble_tokens_only in (True, False):
        results = []
        for compute in ("model", "plain"):
            model.zero_grad()
            if compute == "model":
                sequence = model._fuse_priors(None, features, False, None, ensemble_tokens_only).last_hidden_state
            else:
                sequence = plain_fusion(model, features, ensemble_tokens_only)
            weights = torch.linspace(-1, 1, sequence.numel()).view_as(sequence)
            (sequence * weights).sum().backward()
            gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
            results.append((sequence.detach(), gradients))
        (sequence, gradients), (expected, expected_gradients) = results
        torch.testing.assert_close(sequence, expected, rtol=1e-5, atol=1e-6)
        assert gradients.keys() == expected_gradients.keys()
        scale = max(gradient.abs().max() for gradient in expected_gradients.values())
        for name, gradient in gradients.items():
            # float32 rounding of sums taken in another order, relative to the gradients' scale; the key bias adds a
            # per-row constant to the scores, so its true gradient is 0 and both computations give rounding noise
            torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-4, atol=1e-6 * scale,
                                       msg=lambda message, name=name: f"{name}: {message}")


@pytest.mark.parametrize("strategy", ["ensemble_reads_priors", "isolated"])
def test_the_masked_stack_equals_the_plain_computation(strategy, pixel_values):
    torch.manual_seed(0)
    model = ETFuserModel(tiny_spatial_config(grid_size=3, attention_mask_strategy=strategy)).eval()
    features = model.extract_prior_features(pixel_values)
    for ensemble_tokens_only in (True, False):
        sequence = model._fuse_priors(None, features, False, None, ensemble_tokens_only).last_hidden_state
        torch.testing.assert_close(sequence, plain_fusion(model, features, ensemble_tokens_only), rtol=1e-5, atol=1e-6)


def test_the_folded_attention_weights_equal_the_projected_ones(pixel_values):
    """`output_attentions` of a read-only stack (every layer folded): each layer's weights are those of every token
    projected to its key."""
    torch.manual_seed(0)
    model = ETFuserModel(tiny_spatial_config(grid_size=3, read_only_priors=True, num_hidden_layers=2)).eval()
    outputs = model(pixel_values, output_attentions=True, output_hidden_states=True)
    for layer, weights, hidden_states in zip(model.fusion.layers, outputs.attentions, outputs.hidden_states):
        attention, normed = layer.attention, layer.layernorm_before(hidden_states)
        batch, length, width = normed.shape
        query = attention.q_proj(normed[:, :1]).view(batch, 1, -1, attention.head_dim).transpose(1, 2)
        key = attention.k_proj(normed).view(batch, length, -1, attention.head_dim).transpose(1, 2)
        expected = torch.softmax(query @ key.transpose(2, 3) * attention.scaling, dim=-1)
        torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)


def test_a_training_step_under_bf16_autocast_stays_close_to_the_plain_computation(pixel_values):
    """Under bf16 autocast the reordered products round differently, within bf16's precision."""
    torch.manual_seed(0)
    model = ETFuserModel(tiny_spatial_config(grid_size=3)).train()
    features = model.extract_prior_features(pixel_values)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sequence = model._fuse_priors(None, features, False, None, True).last_hidden_state
        expected = plain_fusion(model, features, True)
    torch.testing.assert_close(sequence.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_the_state_dict_and_the_initialisation_are_unchanged():
    """The same parameters under the same names, initialised alike: saved models load and seeded runs start alike."""
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_spatial_config(grid_size=3))
    names = set(model.state_dict())
    for layer in range(model.config.num_hidden_layers):
        for part in ("q_proj", "k_proj", "v_proj", "o_proj"):
            assert {f"etfuser.fusion.layers.{layer}.attention.{part}.{p}" for p in ("weight", "bias")} <= names
    for name in model.config.priors:
        prefix = f"etfuser.embeddings.projections.{name}."
        assert {prefix + key for key in ("dense.weight", "dense.bias", "layernorm.weight", "layernorm.bias",
                                         "prior_embedding", "position_embedding.rows",
                                         "position_embedding.columns")} <= names
