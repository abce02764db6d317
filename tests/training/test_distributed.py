"""Data-parallel training with the Trainer: two CPU processes (torchrun, gloo) end with identical weights; the main
job under a launcher: the batch shared, no worker processes, one preparation, every write by the main process, the
numbers of one process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO_ROOT, free_port, tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification, ETFuserForLandmarkDetection
from etfuser_hf.priors.fetch import default_cache_dir
from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments


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
        from etfuser_hf.data.collators import FaceCollator
        from etfuser_hf.data.synthetic_faces import make_synthetic_faces
        from etfuser_hf.training.run.trainer import training_arguments
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
    from etfuser_hf.training.comparison import protocol
    from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
    from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS

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


MAIN_JOB = ["--tasks", "expression", "--num-train", "32", "--num-validation", "16", "--num-test", "16", "--seeds", "1",
            "--max-steps", "2", "--no-baselines", "--image-size", "64", "--batch-size", "8"]


def run_main_job(folder: Path, processes: int) -> tuple[str, dict[int, list[dict[str, str]]]]:
    """`training/train.py MAIN_JOB` in `processes` processes (torchrun, gloo) on a cache of its own (the converted
    priors linked in): its stdout, and what each process wrote under the run folder and the cache
    (`audited_train.py`), by rank."""
    cache, logs = folder / "cache", folder / "audit"
    cache.mkdir(parents=True)
    logs.mkdir()
    (cache / "priors").symlink_to(default_cache_dir() / "priors")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "ETFUSER_CACHE": str(cache),
           "ETFUSER_AUDIT_WATCH": os.pathsep.join([str(folder / "run"), str(cache)]), "ETFUSER_AUDIT_LOG": str(logs)}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
                     str(free_port())]
    done = subprocess.run([*launcher, str(Path(__file__).with_name("audited_train.py")), *MAIN_JOB, "--output-dir",
                           str(folder / "run")], capture_output=True, text=True, env=env, cwd=folder, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    return done.stdout, {int(log.stem.removeprefix("rank")): json.loads(log.read_text()) for log in logs.iterdir()}


def files_written(folder: Path) -> set[str]:
    """The files under `folder`'s run folder and cache (not the linked priors), relative to `folder`."""
    found = set()
    for top in ("run", "cache"):
        for root, _, names in os.walk(folder / top):  # the priors' link is not followed
            found |= {str((Path(root) / name).relative_to(folder)) for name in names}
    return found


@pytest.mark.slow  # two main jobs, one on two processes: about 2 minutes on 2 busy cores
def test_main_job_under_torchrun_writes_once_from_the_main_process_and_matches_one_process(tmp_path):
    one_out, one_writes = run_main_job(tmp_path / "one", 1)
    two_out, two_writes = run_main_job(tmp_path / "two", 2)
    assert set(two_writes) == {0, 1} and two_writes[1] == []  # process 1 wrote nothing: no cache, no run folder
    for name in ("metrics.json", "splits.json", "results.md", "model/config.json", "plots/loss_curve.png"):
        path = str((tmp_path / "two" / "run" / name).resolve())
        assert [write["path"] for write in two_writes[0]].count(path) == 1, name

    def run_folder_writes(name: str, writes: list[dict[str, str]]) -> list[tuple[str, str]]:
        run = str((tmp_path / name / "run").resolve())
        return sorted((write["event"], write["path"].removeprefix(run)) for write in writes
                      if write["path"].startswith(run))

    assert run_folder_writes("two", two_writes[0]) == run_folder_writes("one", one_writes[0])
    # the same files as one process writes, but the Trainer's random state of each process in every checkpoint
    # (written in C, unseen by the audit: the one file process 1 writes, which resuming it reads back)
    one_files, two_files = files_written(tmp_path / "one"), files_written(tmp_path / "two")
    assert {re.sub(r"rng_state_\d\.pth$", "rng_state.pth", name) for name in two_files} == one_files
    assert sum(name.endswith("rng_state_1.pth") for name in two_files) == 1
    # the table and each run's line printed once
    assert two_out.count("| et-fuser |") == 1 and two_out.count("expression / et-fuser / seed 0: test accuracy") == 1

    one, two = ({**json.loads((tmp_path / name / "run" / "metrics.json").read_text()),
                 "train_loss": float(re.search(r"'train_loss': '?([0-9.]+)", out).group(1))}
                for name, out in (("one", one_out), ("two", two_out)))
    one_row, two_row = (metrics["protocol"]["tasks"]["expression"]["rows"][0] for metrics in (one, two))
    # within seed noise; one process, seeds 0 / 1 / 2: test accuracy 0.0625 / 0.1875 / 0.0625 (of 16 images),
    # training loss 3.78 / 3.97 / 3.89, agreement on real faces 0.257 / 0.208 / 0.208, prior attention ± 0.01;
    # two processes, seed 0: 0.1875, 3.81, 0.267, the attention of one process to 4 decimals
    assert abs(two_row["test"]["per_seed"][0] - one_row["test"]["per_seed"][0]) <= 3 / 16
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.05)  # not doubled
    assert abs(two_row["real_face_agreement"]["mean"] - one_row["real_face_agreement"]["mean"]) <= 0.05
    for prior, share in one["prior_attention"].items():
        assert two["prior_attention"][prior] == pytest.approx(share, abs=0.005)
    assert two["protocol"]["splits"] == one["protocol"]["splits"]
