"""Data-parallel training with the Trainer: two CPU processes (torchrun, gloo) end with identical weights."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import REPO_ROOT, free_port, tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification, ETFuserForLandmarkDetection
from etfuser_hf.training.trainer import ETFuserTrainer, training_arguments


def _initial_classifier() -> torch.Tensor:
    torch.manual_seed(0)
    return ETFuserForImageClassification(tiny_etfuser_config(num_labels=7)).classifier.dense.weight


def test_two_process_data_parallel_run_ends_with_identical_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(REPO_ROOT / 'src')!r}); sys.path.insert(0, {str(REPO_ROOT / 'tests')!r})
        from conftest import tiny_etfuser_config
        from transformers import Trainer
        from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
        from etfuser_hf.data.synthetic_faces import make_synthetic_faces
        from etfuser_hf.training.collators import FaceCollator
        from etfuser_hf.training.trainer import training_arguments
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
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    str(free_port()), str(script)], check=True, cwd=tmp_path, timeout=300)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(rank0["classifier.dense.weight"], _initial_classifier())


@pytest.mark.parametrize("head", [ETFuserForImageClassification, ETFuserForLandmarkDetection])
def test_distributed_training_keeps_the_losses_unscaled(head, tmp_path):
    """Every head returns its batch's mean loss: the Trainer must not rescale it for `num_items_in_batch`, which it
    does times the number of processes under data parallelism (the logged training loss doubled on two processes,
    and a distillation term added to it counted half)."""
    args = training_arguments(tmp_path, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    assert ETFuserTrainer(model=head(tiny_etfuser_config(num_labels=7)), args=args).model_accepts_loss_kwargs is False
