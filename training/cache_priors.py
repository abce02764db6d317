"""Precompute the frozen priors' features once: `python training/cache_priors.py [--help]` — a thin entry point over
`etfuser_hf.data.feature_cache` (`training/train.py` then reads the cache instead of running the priors)."""

from etfuser_hf.training.comparison.prior_features import main

if __name__ == "__main__":
    main(prog="training/cache_priors.py")
