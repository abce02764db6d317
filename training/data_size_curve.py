"""The data-size curve (docs/recipe.md): `python training/data_size_curve.py --train-sizes 800 1600 3200 [sweep
options]` — a thin entry point over `etfuser_hf.training.data_size_curve` (validation split only)."""

from etfuser_hf.training.data_size_curve import main

if __name__ == "__main__":
    main()
