"""How much of the pretrained FER net's reading of real faces a model trained on the SYNTHETIC expression labels can
keep at best: `python training/agreement_ceiling.py [--num-train 800 --num-validation 400 --data-seed 1234]`.

The main job's splits (train, validation; test is not read), the FER net frozen, a linear head fitted on its pooled
features (`etfuser_hf.training.run.forgetting.agreement_ceiling`); prints the report as JSON."""

import argparse
import json

import numpy as np

from etfuser_hf.training.comparison.splits import synthetic_splits
from etfuser_hf.training.run.forgetting import agreement_ceiling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-train", type=int, default=800)
    parser.add_argument("--num-validation", type=int, default=400)
    parser.add_argument("--data-seed", type=int, default=1234)
    args = parser.parse_args()
    splits, _ = synthetic_splits({"train": args.num_train, "validation": args.num_validation, "test": 1}, 112,
                                 seed=args.data_seed)

    def arrays(split):
        images = np.stack([np.asarray(image.convert("RGB")) for image in splits[split]["image"]])
        return images, np.asarray(splits[split]["expression"])

    names = splits["train"].features["expression"].names
    report = agreement_ceiling(*arrays("train"), *arrays("validation"), names)
    print("SYNTHETIC training faces; agreement on the real faces of etfuser_hf.training.run.forgetting.real_faces")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
