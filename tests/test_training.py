"""Training with the Trainer: prior-feature cache, bf16 on CPU, resume after interruption, LoRA, significance tests,
collation errors and the two-process (gloo) data-parallel run."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_etfuser_config
from safetensors.torch import load_file
from transformers import Trainer

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.synthetic_faces import make_synthetic_faces
from etfuser_hf.training_utils import (
    FaceCollator,
    PriorFeatureCache,
    apply_lora,
    mcnemar_pvalue,
    paired_bootstrap_pvalue,
    prior_fingerprint,
    training_arguments,
)


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(12, image_size=32, seed=3)


@pytest.fixture
def processor():
    return ETFuserImageProcessor(size={"height": 32, "width": 32})


def tiny_model(seed: int = 0, **overrides) -> ETFuserForImageClassification:
    torch.manual_seed(seed)
    return ETFuserForImageClassification(tiny_etfuser_config(num_labels=7, **overrides))


def quiet_arguments(output_dir, **overrides):
    settings = dict(num_train_epochs=1, per_device_train_batch_size=4, eval_strategy="no", save_strategy="no",
                    load_best_model_at_end=False, logging_steps=1, disable_tqdm=True, learning_rate=1e-3,
                    warmup_steps=0, lr_scheduler_type="constant")
    return training_arguments(output_dir, **{**settings, **overrides})


# ----------------------------------------------------------------------------------------------------------------------
# prior-feature cache
# ----------------------------------------------------------------------------------------------------------------------


def test_cached_features_give_the_uncached_loss(faces, processor, tmp_path):
    model = tiny_model().eval()
    cached = PriorFeatureCache(model, processor, tmp_path)(faces)
    assert {"prior__vit", "prior__convnext", "prior__clip"} <= set(cached.column_names)
    rows = [cached[i] for i in range(6)]
    with_cache = FaceCollator(processor, "expression", 7)(rows)
    without = FaceCollator(processor, "expression", 7, use_cached_features=False)(rows)
    assert "prior_features" in with_cache and "prior_features" not in without
    torch.testing.assert_close(model(**with_cache).loss, model(**without).loss, rtol=1e-5, atol=1e-6)


def test_cache_is_reused_and_invalidated_by_prior_changes(faces, processor, tmp_path):
    model = tiny_model().eval()
    PriorFeatureCache(model, processor, tmp_path)(faces)
    assert len(list(tmp_path.glob("prior-features-*.arrow"))) == 1
    PriorFeatureCache(model, processor, tmp_path)(faces)  # same priors, same images: read back
    assert len(list(tmp_path.glob("prior-features-*.arrow"))) == 1

    fingerprint = prior_fingerprint(model, "vit")
    changed_weights = copy.deepcopy(model)
    with torch.no_grad():
        changed_weights.etfuser.priors["vit"].embeddings.cls_token.add_(0.1)
    assert prior_fingerprint(changed_weights, "vit") != fingerprint
    changed_contract = copy.deepcopy(model)
    changed_contract.config.priors["vit"].image_mean = [0.4, 0.4, 0.4]
    assert prior_fingerprint(changed_contract, "vit") != fingerprint
    PriorFeatureCache(changed_weights, processor, tmp_path)(faces)
    assert len(list(tmp_path.glob("prior-features-*.arrow"))) == 2


def test_empty_dataset_is_refused(faces, processor, tmp_path):
    with pytest.raises(ValueError, match="dataset is empty"):
        PriorFeatureCache(tiny_model(), processor, tmp_path)(faces.select([]))


def test_collator_names_the_bad_label(faces, processor):
    rows = [dict(faces[0]), dict(faces[1], expression=9)]
    with pytest.raises(ValueError, match=r"expression: label 9 is outside id2label \(0..6\)"):
        FaceCollator(processor, "expression", 7)(rows)


# ----------------------------------------------------------------------------------------------------------------------
# Trainer runs
# ----------------------------------------------------------------------------------------------------------------------


def test_trainer_steps_with_bf16_on_cpu(faces, processor, tmp_path):
    model = tiny_model()
    before = model.classifier.dense.weight.detach().clone()
    trainer = Trainer(model=model, args=quiet_arguments(tmp_path, bf16=True, max_steps=3), train_dataset=faces,
                      data_collator=FaceCollator(processor, "expression", 7))
    result = trainer.train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
    assert not torch.equal(model.classifier.dense.weight, before)


def test_resume_after_interruption_matches_an_uninterrupted_run(faces, processor, tmp_path):
    collator = FaceCollator(processor, "expression", 7)
    settings = dict(max_steps=6, save_strategy="steps", save_steps=3, save_total_limit=None, data_seed=0)

    uninterrupted = tiny_model()
    Trainer(model=uninterrupted, args=quiet_arguments(tmp_path / "full", **settings), train_dataset=faces,
            data_collator=collator).train()

    interrupted = tiny_model()
    Trainer(model=interrupted, args=quiet_arguments(tmp_path / "part", **{**settings, "max_steps": 3}),
            train_dataset=faces, data_collator=collator).train()  # "killed" after the checkpoint at step 3
    resumed = tiny_model(seed=123)  # a fresh process builds a differently initialised model
    Trainer(model=resumed, args=quiet_arguments(tmp_path / "part", **settings), train_dataset=faces,
            data_collator=collator).train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-3"))

    expected = uninterrupted.state_dict()
    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_lora_training_saves_loads_and_merges(faces, processor, tmp_path):
    from peft import PeftModel

    model = apply_lora(tiny_model(), rank=4)
    Trainer(model=model, args=quiet_arguments(tmp_path, max_steps=2, learning_rate=5e-2), train_dataset=faces,
            data_collator=FaceCollator(processor, "expression", 7)).train()
    model.save_pretrained(tmp_path / "adapter")
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any("lora_A" in key for key in adapter) and not any(".priors." in key for key in adapter)
    pixel_values = torch.rand(2, 3, 32, 32)
    expected = model.eval()(pixel_values).logits
    reloaded = PeftModel.from_pretrained(tiny_model(), tmp_path / "adapter").eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, expected)
    torch.testing.assert_close(reloaded.merge_and_unload()(pixel_values).logits, expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# significance tests
# ----------------------------------------------------------------------------------------------------------------------


def test_pvalues_on_constructed_outcomes():
    rng = np.random.default_rng(0)
    same = rng.random(200) < 0.6
    assert paired_bootstrap_pvalue(same, same) == 1.0 and mcnemar_pvalue(same, same) == 1.0
    always, never = np.ones(200, bool), np.zeros(200, bool)
    assert paired_bootstrap_pvalue(always, never) < 0.001 and mcnemar_pvalue(always, never) < 1e-10
    # 10 discordant pairs split 6/4: exact two-sided binomial p = 2 * P(X <= 4 | n=10) = 0.7539
    a = np.array([1] * 6 + [0] * 4 + [1] * 50, bool)
    b = np.array([0] * 6 + [1] * 4 + [1] * 50, bool)
    assert mcnemar_pvalue(a, b) == pytest.approx(0.75390625)
    assert 0.3 < paired_bootstrap_pvalue(a, b) <= 1.0
    with pytest.raises(ValueError, match="same eval examples"):
        paired_bootstrap_pvalue(a, b[:-1])


# ----------------------------------------------------------------------------------------------------------------------
# two CPU processes (gloo)
# ----------------------------------------------------------------------------------------------------------------------


def test_two_process_data_parallel_run_ends_with_identical_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(REPO_ROOT / 'src')!r}); sys.path.insert(0, {str(REPO_ROOT / 'tests')!r})
        from conftest import tiny_etfuser_config
        from transformers import Trainer
        from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
        from etfuser_hf.synthetic_faces import make_synthetic_faces
        from etfuser_hf.training_utils import FaceCollator, training_arguments
        torch.manual_seed(0)
        model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7))
        args = training_arguments({str(tmp_path / 'out')!r}, max_steps=3, per_device_train_batch_size=2,
                                  eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                                  disable_tqdm=True, ddp_backend="gloo")
        processor = ETFuserImageProcessor(size={{"height": 32, "width": 32}})
        trainer = Trainer(model=model, args=args, train_dataset=make_synthetic_faces(8, image_size=32),
                          data_collator=FaceCollator(processor, "expression", 7))
        trainer.train()
        assert torch.distributed.get_world_size() == 2
        rank = int(os.environ["RANK"])
        torch.save(model.state_dict(), {str(tmp_path)!r} + f"/rank{{rank}}.pt")
    """))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                    str(script)], check=True, cwd=tmp_path, timeout=300)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(rank0["classifier.dense.weight"], _initial_classifier())


def _initial_classifier() -> torch.Tensor:
    torch.manual_seed(0)
    return ETFuserForImageClassification(tiny_etfuser_config(num_labels=7)).classifier.dense.weight
