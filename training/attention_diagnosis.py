"""Does the ensemble token use *where* a prior sees something? For each grid-reading model a run folder keeps
(`checkpoints/attention/<task>`: the first spatial row, seed 0), its last-layer attention over each prior's grid on the
validation faces (the test split is not read):

    python training/attention_diagnosis.py runs/etfuser-synthetic [--num-faces 200]

Per task and prior: the prior's share of the ensemble token's attention (`prior_attention`), the cell maps'
entropy over log(g*g) (1: uniform over the cells, the grid's mean; 0: one cell), and how much the map moves from face
to face (mean total-variation distance of a face's map from the mean map: 0 means every face gets the same fixed
weighting of the cells, which an MLP over the flattened grid can represent as well). SYNTHETIC faces by default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from etfuser_hf import ETFuserForImageClassification, ETFuserForLandmarkDetection, ETFuserImageProcessor
from etfuser_hf.analysis.attention_maps import grid_attention
from etfuser_hf.data.collators import pixel_values
from etfuser_hf.training.comparison.splits import synthetic_splits
from transformers import AutoConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--num-faces", type=int, default=200)
    args = parser.parse_args()
    folders = sorted((args.run_folder / "checkpoints" / "attention").glob("*"))
    if not folders:
        raise SystemExit(f"run_folder: {args.run_folder} has no checkpoints/attention/<task> (no grid-reading row)")
    splits_record = json.loads((args.run_folder / "splits.json").read_text())
    if splits_record["source"] != "synthetic":
        raise SystemExit("run_folder: only runs on the synthetic default are supported (their validation faces are "
                         "regenerated from splits.json)")
    sizes = splits_record["sizes"]
    splits, _ = synthetic_splits({"train": sizes["train"], "validation": sizes["validation"], "test": 1},
                                 splits_record["generator"]["image_size"], seed=splits_record["seed"])
    faces = [splits["validation"][index]["image"] for index in range(min(args.num_faces, sizes["validation"]))]
    print(f"{len(faces)} SYNTHETIC validation faces; last fusion layer, mean over heads")
    print(f"{'task':10s} {'prior':17s} {'grid':>4s} {'share':>6s} {'entropy / log(g*g)':>19s} {'face-to-face TV':>16s}")
    for folder in folders:
        head = ETFuserForLandmarkDetection if "ETFuserForLandmarkDetection" in (
            AutoConfig.from_pretrained(folder).architectures or ()) else ETFuserForImageClassification
        model = head.from_pretrained(folder, dtype=torch.float32).eval()
        processor = ETFuserImageProcessor.from_pretrained(folder) if (folder / "preprocessor_config.json").exists() \
            else ETFuserImageProcessor(size={"height": 112, "width": 112})
        inputs = pixel_values(faces, processor)
        maps = grid_attention(model, inputs)
        with torch.no_grad():  # (faces, priors): each prior's share of the ensemble tokens' attention
            shares = model(pixel_values=inputs, output_attentions=True).prior_attention.mean(dim=0)
        shares = dict(zip(model.config.priors, shares.tolist()))
        for name, share in shares.items():
            if name not in maps:
                print(f"{folder.name:10s} {name:17s} {'1':>4s} {share:6.3f} {'(pooled)':>19s} {'':>16s}")
                continue
            cells = maps[name].reshape(len(faces), -1).astype(np.float64)  # (faces, g*g), each row sums to 1
            entropy = -(cells * np.log(np.clip(cells, 1e-12, None))).sum(axis=1) / np.log(cells.shape[1])
            movement = 0.5 * np.abs(cells - cells.mean(axis=0)).sum(axis=1)
            print(f"{folder.name:10s} {name:17s} {maps[name].shape[1]:4d} {share:6.3f} "
                  f"{entropy.mean():11.3f} ± {entropy.std():.3f} {movement.mean():8.3f} ± {movement.std():.3f}")


if __name__ == "__main__":
    main()
