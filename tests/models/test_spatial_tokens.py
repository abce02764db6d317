"""Spatial tokens: every prior's last feature map (or patch grid) as g x g grid tokens with a 2-D position embedding,
and the canonical model's own grid tokens in the fusion (`fusion_mode="canonical_tokens"`). Select with
`-k "grid or spatial"`."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_spatial_config as spatial_config
from conftest import tiny_vit_config
from transformers.utils import ModelOutput

from etfuser_hf import ETFuserForImageClassification, ETFuserModel
from etfuser_hf.hub.export import export_onnx, verify_onnx
from etfuser_hf.models.configuration_etfuser import EncoderSpec
from etfuser_hf.models.configuration_face_priors import FerMiniXceptionConfig
from etfuser_hf.models.encoders import grid_tokens


def seeded(model_class, config, seed: int = 0):
    torch.manual_seed(seed)
    return model_class(config).eval()


def test_grid_tokens_of_a_cnn_map_are_its_cells_in_row_major_order():
    spec = EncoderSpec(config=FerMiniXceptionConfig(), feature="grid", grid_size=2)
    feature_map = torch.randn(3, 128, 4, 4)
    tokens = grid_tokens(ModelOutput(last_hidden_state=feature_map), spec, 2, "fer")
    assert tokens.shape == (3, 4, 128)
    for row in range(2):
        for column in range(2):
            cell = feature_map[:, :, 2 * row: 2 * row + 2, 2 * column: 2 * column + 2].mean(dim=(2, 3))
            torch.testing.assert_close(tokens[:, 2 * row + column], cell)
    # a grid that does not divide the map overlaps its cells exactly as adaptive average pooling does
    torch.testing.assert_close(grid_tokens(ModelOutput(last_hidden_state=feature_map), spec, 3, "fer"),
                               torch.nn.functional.adaptive_avg_pool2d(feature_map, 3).flatten(2).transpose(1, 2))


def test_grid_tokens_of_a_vit_drop_cls_and_follow_the_patch_grid():
    spec = EncoderSpec(config=tiny_vit_config(), feature="grid", grid_size=2)  # 32 px / 8 px patches: a 4 x 4 grid
    patches = torch.randn(2, 16, 32)
    hidden = torch.cat([torch.full((2, 1, 32), 1e6), patches], dim=1)  # a CLS token that must not leak in
    tokens = grid_tokens(ModelOutput(last_hidden_state=hidden), spec, 2, "vit")
    grid = patches.view(2, 4, 4, 32)
    assert tokens.shape == (2, 4, 32)
    torch.testing.assert_close(tokens[:, 1], grid[:, 0:2, 2:4].mean(dim=(1, 2)))  # row 0, column 1
    torch.testing.assert_close(tokens[:, 2], grid[:, 2:4, 0:2].mean(dim=(1, 2)))  # row 1, column 0


def test_grid_priors_give_g_squared_tokens_each_through_the_model():
    model = seeded(ETFuserModel, spatial_config(grid_size=3))
    features = model.extract_prior_features(torch.rand(2, 3, 32, 32))
    assert {name: tuple(value.shape) for name, value in features.items()} == {"fer": (2, 9, 128), "vit": (2, 9, 32)}
    outputs = model(torch.rand(2, 3, 32, 32))
    assert outputs.prior_tokens.shape == (2, 18, 32) and outputs.last_hidden_state.shape == (2, 19, 32)


def test_grid_size_one_equals_the_mean_feature():
    pixel_values = torch.rand(2, 3, 32, 32)
    grid = seeded(ETFuserModel, spatial_config(grid_size=1, priors={
        "fer": {"config": FerMiniXceptionConfig(), "feature": "grid", "grid_size": 1}}))
    mean = ETFuserModel(spatial_config(priors={"fer": {"config": FerMiniXceptionConfig(), "feature": "mean"}}))
    mean.load_state_dict(grid.state_dict(), strict=False)  # the same prior weights
    torch.testing.assert_close(grid.extract_prior_features(pixel_values)["fer"],
                               mean.eval().extract_prior_features(pixel_values)["fer"], rtol=1e-5, atol=1e-6)


def test_the_position_embedding_distinguishes_every_cell():
    model = seeded(ETFuserModel, spatial_config(grid_size=3))
    projection = model.embeddings.projections["fer"]
    same_everywhere = torch.randn(1, 1, 128).expand(1, 9, 128)
    tokens = projection(same_everywhere)[0]  # one feature in all nine cells
    distances = torch.cdist(tokens, tokens)
    assert (distances + torch.eye(9) * 1e3).min() > 1e-3  # every pair of cells differs, (0, 1) and (1, 0) included
    assert tuple(projection.position_embedding().shape) == (1, 9, 32)


@pytest.mark.parametrize("settings, message", [
    ({"feature": "grid", "grid_size": 0}, "grid_size must be a positive int"),
    ({"feature": "pooled", "grid_size": 2}, "grid_size=2 only applies to feature='grid'"),
])
def test_bad_grid_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=rf"priors\['fer'\]\.{message}"):
        spatial_config(priors={"fer": {"config": FerMiniXceptionConfig(), **settings}})


def test_spatial_canonical_tokens_start_exactly_at_the_canonical_model():
    pixel_values = torch.rand(3, 3, 32, 32)
    fused = seeded(ETFuserForImageClassification, spatial_config("canonical_tokens"))
    alone = ETFuserForImageClassification(spatial_config("none")).eval()
    missing, unexpected = alone.load_state_dict(fused.state_dict(), strict=False)
    assert not missing  # the canonical model and the head are the same modules
    outputs = fused(pixel_values, output_attentions=True)
    assert outputs.attentions[-1].shape[-1] == 1 + 2 * 4 + 4  # ensemble, two priors' 2 x 2 grids, canonical 2 x 2
    torch.testing.assert_close(outputs.logits, alone(pixel_values).logits, rtol=0, atol=0)


def test_spatial_canonical_tokens_send_gradients_into_the_canonical_model():
    model = seeded(ETFuserModel, spatial_config("canonical_tokens"))
    # the ensemble token depends on the canonical model only through its grid tokens in the fusion sequence; a random
    # readout, because the plain sum of a LayerNorm's output (unit weight) is constant and back-propagates zeros
    ensemble_tokens = model(torch.rand(2, 3, 32, 32)).ensemble_tokens
    (ensemble_tokens * torch.randn(ensemble_tokens.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    # every weight up to the last feature map (ConvNeXt's final LayerNorm feeds only its pooler output)
    gradients = {name: parameter.grad for name, parameter in model.backbone.named_parameters()
                 if not name.startswith("layernorm.")}
    assert gradients and all(grad is not None and grad.abs().sum() > 0 for grad in gradients.values()), [
        name for name, grad in gradients.items() if grad is None or not grad.abs().sum() > 0]
    assert all(parameter.grad is None for parameter in model.priors.parameters())  # the priors stay frozen


@pytest.mark.parametrize("fusion_mode", ["add_to_pooled", "canonical_tokens", "concat_priors"])
def test_a_saved_grid_config_reloads_to_the_same_logits(tmp_path, fusion_mode):
    model = seeded(ETFuserForImageClassification, spatial_config(fusion_mode, grid_size=2))
    with torch.no_grad():
        model.base_model.fusion_gate.fill_(0.5) if model.base_model.fusion_gate is not None else None
    model.save_pretrained(tmp_path / "model")
    reloaded = ETFuserForImageClassification.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
    assert reloaded.config.priors["fer"].grid_size == 2 and reloaded.config.fusion_mode == fusion_mode
    pixel_values = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits)


def test_a_spatial_model_exports_to_onnx(tmp_path):
    model = seeded(ETFuserForImageClassification, spatial_config("canonical_tokens", grid_size=3))
    with torch.no_grad():
        model.base_model.fusion_gate.fill_(0.5)  # the canonical tokens' path counts in the exported logits
    path = export_onnx(model, tmp_path / "spatial.onnx")
    assert verify_onnx(model, path, batch_sizes=(1, 3)) <= 1e-4
