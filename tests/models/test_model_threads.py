"""One loaded ET-Fuser, several threads: no forward keeps per-call state on the model, so each thread gets the outputs
a sequential run gives for its own input (the `prepend_token` insertion into the backbone included)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from conftest import run_in_threads, tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.models.encoders import prepare_encoder_inputs

THREADS = 4
ITERATIONS = 40


def images(count: int, batch: int = 2) -> list[torch.Tensor]:
    return [torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(index)) for index in range(count)]


@pytest.mark.parametrize("fusion_mode", ["prepend_token", "add_to_pooled"])
def test_threads_sharing_one_model_get_their_own_logits(fusion_mode):
    model = ETFuserForImageClassification(tiny_etfuser_config(fusion_mode=fusion_mode)).eval()
    inputs = images(THREADS)

    def logits(pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(pixel_values=pixel_values).logits

    sequential = [logits(pixel_values) for pixel_values in inputs]
    assert not any(torch.equal(sequential[0], other) for other in sequential[1:])  # the inputs tell threads apart
    for index, results in enumerate(run_in_threads(logits, inputs, ITERATIONS)):
        for result in results:
            assert torch.equal(result, sequential[index])


def test_thread_prepend_token_inserts_only_inside_the_models_own_forward():
    """The backbone's embedding hook is registered once and reads the current call's tokens: the backbone called on
    its own sees no ensemble token, its run inside the model's forward sees them, and copies and pickles of the model
    carry the hook."""
    model = ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="prepend_token")).eval()
    base = model.etfuser
    pixel_values = images(1)[0]
    with torch.inference_mode():
        logits = model(pixel_values=pixel_values).logits
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert torch.equal(clone(pixel_values=pixel_values).logits, logits)
        lengths = []
        base.backbone.register_forward_hook(lambda module, args, out: lengths.append(out.last_hidden_state.shape[1]))
        base.backbone(pixel_values=pixel_values)
        model(pixel_values=pixel_values)
        base.backbone(pixel_values=pixel_values)
    patches_and_cls = (32 // 8) ** 2 + 1
    assert lengths[:3] == [patches_and_cls, patches_and_cls + model.config.num_ensemble_tokens, patches_and_cls]
    assert len(base.backbone.get_submodule(base.backbone_embeddings_path)._forward_hooks) == 1


def test_extract_prior_features_returns_the_priors_outputs_of_the_same_run(pixel_values):
    model = ETFuserForImageClassification(tiny_etfuser_config()).etfuser.eval()
    with torch.inference_mode():
        features, outputs = model.extract_prior_features(pixel_values, return_prior_outputs=True)
        alone = model.extract_prior_features(pixel_values)
        vit = model.priors["vit"](pixel_values=prepare_encoder_inputs(pixel_values, model.config.priors["vit"]))
    assert list(outputs) == list(features) == list(alone) == list(model.config.priors)
    for name in features:
        assert torch.equal(features[name], alone[name])
    torch.testing.assert_close(outputs["vit"].last_hidden_state, vit.last_hidden_state, rtol=0, atol=0)


def test_extract_prior_features_refuses_a_non_bool_return_prior_outputs(pixel_values):
    model = ETFuserForImageClassification(tiny_etfuser_config()).etfuser
    with pytest.raises(TypeError, match="return_prior_outputs: expected a bool, got str"):
        model.extract_prior_features(pixel_values, return_prior_outputs="yes")
