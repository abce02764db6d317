"""The README's main job: `python training/train.py [--help]` — a thin entry point over `etfuser_hf.training.main`
(real face priors, synthetic offline default data, Trainer, baselines with p-values, run folder)."""

from etfuser_hf.training.main import main

if __name__ == "__main__":
    main(prog="training/train.py")
