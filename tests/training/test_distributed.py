"""Data-parallel training with the Trainer: two CPU processes (torchrun, gloo) end with identical weights; the main
job under a launcher: the batch shared, no worker processes, every write by the main process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

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


# ----------------------------------------------------------------------------------------------------------------------
# the main job under a launcher
# ----------------------------------------------------------------------------------------------------------------------


def launched(processes: int, main: bool) -> SimpleNamespace:
    """What `process_state()` tells one process of a launch of `processes` (no process group needed)."""
    return SimpleNamespace(num_processes=processes, is_main_process=main)


def test_distributed_launch_shares_the_batch_runs_no_workers_and_checks_the_folder_on_the_main_process(tmp_path,
                                                                                                       capsys):
    from etfuser_hf.training.main import parse_args

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    # another process may start after the main one has written into the folder: only the main process checks it
    args = parse_args(["--output-dir", str(run)], state=launched(2, main=False))
    assert (args.workers, args.batch_size, args.batch_per_process) == (1, 32, 16)
    with pytest.raises(SystemExit):
        parse_args(["--output-dir", str(run)], state=launched(2, main=True))
    assert f"--output-dir: output folder {run} exists and is not empty" in capsys.readouterr().err
    alone = parse_args(["--output-dir", str(tmp_path / "new")], state=launched(1, main=True))
    assert (alone.workers, alone.batch_per_process) == (2, 32)
    assert parse_args(["--output-dir", str(run), "--workers", "1"], state=launched(2, main=False)).workers == 1
    with pytest.raises(SystemExit):
        parse_args(["--output-dir", str(run), "--workers", "3"], state=launched(2, main=False))
    assert ("--workers 3: trains runs side by side in processes of its own; under torchrun / accelerate launch the 2 "
            "processes already train each run together. Drop --workers (or pass 1).") in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--output-dir", str(run), "--batch-size", "9"], state=launched(2, main=False))
    assert ("--batch-size: 9 images per step cannot be shared evenly by 2 processes; pass a multiple of 2."
            in capsys.readouterr().err)
    assert not (tmp_path / "new").exists() and (run / "metrics.json").read_text() == "{}"


def test_distributed_launch_saves_a_runs_model_from_the_main_process_only(tmp_path, monkeypatch):
    from etfuser_hf.training import protocol
    from etfuser_hf.training.rows import PROTOCOL_ROWS
    from etfuser_hf.training.tasks import SYNTHETIC_TASKS

    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7))

    def train_run(row, task, seed, context, keep_model=None, **kwargs):  # what the protocol's training hands on
        if keep_model is not None:
            keep_model(model)
        return seed

    monkeypatch.setattr(protocol, "train_run", train_run)
    run = protocol.Run(PROTOCOL_ROWS[0], SYNTHETIC_TASKS["expression"], 3, save_to=tmp_path / "model")
    monkeypatch.setattr(protocol, "process_state", lambda: launched(2, main=False))
    assert protocol.train_runs([run], context=None) == [3]
    assert not (tmp_path / "model").exists()
    monkeypatch.setattr(protocol, "process_state", lambda: launched(2, main=True))
    assert protocol.train_runs([run], context=None) == [3]
    saved = ETFuserForImageClassification.from_pretrained(tmp_path / "model")
    torch.testing.assert_close(saved.classifier.dense.weight, model.classifier.dense.weight)


@pytest.mark.parametrize("head", [ETFuserForImageClassification, ETFuserForLandmarkDetection])
def test_distributed_training_keeps_the_losses_unscaled(head, tmp_path):
    """Every head returns its batch's mean loss: the Trainer must not rescale it for `num_items_in_batch`, which it
    does times the number of processes under data parallelism (the logged training loss doubled on two processes,
    and a distillation term added to it counted half)."""
    args = training_arguments(tmp_path, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    assert ETFuserTrainer(model=head(tiny_etfuser_config(num_labels=7)), args=args).model_accepts_loss_kwargs is False
