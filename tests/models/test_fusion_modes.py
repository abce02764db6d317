"""The fusion-mode table: every entry builds the modules its properties name, and a new mode is one table entry."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification, ETFuserModel
from etfuser_hf.models.fusion_modes import FUSION_MODES, POOLED_FUSION_MODES, FusionMode, fusion_mode_properties


@pytest.mark.parametrize("name", list(FUSION_MODES))
def test_each_mode_builds_what_its_entry_says(name):
    fusion = FUSION_MODES[name]
    config = tiny_etfuser_config(fusion_mode=name, ensemble_loss_weight=0.5)
    assert config.fusion_properties is fusion
    model = ETFuserForImageClassification(config)
    base = model.etfuser
    assert (len(base.priors) == len(config.priors)) == fusion.runs_priors
    assert (base.embeddings is not None) == fusion.runs_priors
    assert (base.fusion is not None) == (fusion.runs_priors and fusion.ensemble_token)
    assert (base.concat_priors is not None) == (fusion.runs_priors and not fusion.ensemble_token)
    assert (base.backbone is not None) == fusion.canonical_model
    assert (base.ensemble_to_backbone is not None) == fusion.projects_to_backbone
    assert (base.backbone_embeddings_path is not None) == fusion.into_token_sequence
    assert (model.ensemble_head is not None) == fusion.supervises_ensemble_token
    assert ("vit_prior_config" in config.sub_configs) == fusion.runs_priors
    pooled = base(torch.rand(2, 3, 32, 32)).pooler_output
    assert pooled.shape == (2, base.fused_size)


def test_pooled_modes_are_the_ones_meeting_the_pooled_output():
    assert POOLED_FUSION_MODES == ("add_to_pooled", "concat_before_head", "canonical_tokens", "concat_priors")
    with pytest.raises(ValueError, match=r"fusion_mode must be one of \('prepend_token', .*got 'sum'"):
        fusion_mode_properties("sum")


def test_a_new_mode_is_one_table_entry(monkeypatch):
    """A mode that inserts the token into the backbone AND concatenates it before the head: no model code changes."""
    monkeypatch.setitem(FUSION_MODES, "prepend_and_concat", FusionMode(
        "prepend_and_concat", runs_priors=True, ensemble_token=True, canonical_model=True, into_token_sequence=True,
        at_pooled="concat"))
    config = tiny_etfuser_config(fusion_mode="prepend_and_concat")
    model = ETFuserModel(config).eval()
    outputs = model(torch.rand(2, 3, 32, 32))
    assert model.fused_size == config.backbone.feature_dim + config.hidden_size
    assert outputs.pooler_output.shape == (2, model.fused_size)
    # the concatenated half is the pooled ensemble token itself
    torch.testing.assert_close(outputs.pooler_output[:, config.backbone.feature_dim:], outputs.ensemble_tokens.mean(1))
    assert model.ensemble_to_backbone is not None and model.backbone_embeddings_path is not None


@pytest.mark.parametrize("settings, message", [
    ({"at_pooled": "multiply"}, "at_pooled must be None, 'add' or 'concat'"),
    ({"canonical_model": False, "at_pooled": "add"}, "fusing into the backbone needs canonical_model=True"),
    ({"runs_priors": False}, "an ensemble token or needed priors need runs_priors=True"),
    ({"canonical_tokens": True}, "canonical tokens need an ensemble token fused at the pooled output"),
])
def test_an_inconsistent_entry_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        FusionMode("new_mode", **{"runs_priors": True, "ensemble_token": True, "canonical_model": True, **settings})
