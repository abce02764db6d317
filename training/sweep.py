"""The validation sweep behind the default recipe (docs/recipe.md): `python training/sweep.py [--help]` — a thin entry
point over `etfuser_hf.training.validation_sweep` (the same as `etfuser sweep`; validation split only)."""

from etfuser_hf.training.validation_sweep import main

if __name__ == "__main__":
    main(prog="training/sweep.py")
