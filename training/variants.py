"""The comparison entries `training/train.py` can train besides ET-Fuser: `python training/variants.py` lists them.

The registry lives in the package (`etfuser_hf.training.variants.VARIANTS`, so `etfuser train` sees it too); a new
ablation is one line, e.g.

    register_variant("ensemble-tokens-4", "ET-Fuser ablation: 4 ensemble tokens", num_ensemble_tokens=4)

then `python training/train.py --variants ensemble-tokens-4` (groups: "ablation" with --ablations, "companion" with
--companion NAME; they join the first task's table beside the protocol's rows, `etfuser_hf.training.protocol`).
"""

from etfuser_hf.training.variants import VARIANTS, Variant, register_variant

__all__ = ["VARIANTS", "Variant", "register_variant"]

if __name__ == "__main__":
    for name, variant in VARIANTS.items():
        settings = {**variant.overrides, **({"num_priors": variant.num_priors} if variant.num_priors else {})}
        print(f"{name:28s} {variant.group:10s} {variant.description}  {settings}")
