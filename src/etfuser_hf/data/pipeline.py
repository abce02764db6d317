"""The data wing's stages in the order a job runs them, from the splits a reader gives (`sources/`) to the splits a
collator batches (`collators.FaceCollator`):

    pipeline = FacePipeline(processor, cache_dir, face_policy="detect")  # None: faces whose landmarks are known
    splits = pipeline.faces(splits)                  # each image's face found once (alignment.py), counted
    splits = pipeline.views(splits, augmentations)   # K augmented views per training image (views.py)
    splits = pipeline.prior_features(splits, readers) # each frozen prior once per image, for every view (feature_cache.py)
    splits = pipeline.pixels(splits)                 # each image decoded once (image_cache.py)

or `pipeline.prepare(splits, readers, augmentations)` for all four. Every stage is cached by the images' keys, so a
warm start reads no image. What the stages found (faces per kind, undecodable files) goes into `record`, which the
job writes to splits.json. The prior readers are models the caller builds (the recipe's way of reading the priors
and each row's, `training.comparison.prior_features.prior_readers`): the wing knows no recipe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..models.modeling_etfuser import ETFuserPreTrainedModel
from .alignment import ALIGNMENT_COLUMN, FaceAligner, align_dataset, face_counts
from .feature_cache import PriorFeatureCache
from .image_cache import cache_decoded_images
from .sources.base import SHOWN_PER_REASON, SourceReport
from .views import Augmentation, render_views

SYNTHETIC_GEOMETRY = "landmarks"  # the synthetic faces' known (68, 2) landmarks place each network's crop


def face_policy(report: SourceReport | None) -> str:
    """How a dataset's faces are found: its reader's declared policy (`SourceReport.faces`), "detect" for data no
    reader described."""
    return report.faces if report is not None and report.faces else "detect"


@dataclass
class FacePipeline:
    """One job's data stages over its splits. `face_policy`: how a dataset's faces are found (`SourceReport.faces`:
    detect, whole_image, box:<column>), None for faces whose landmarks the data holds (the synthetic default);
    `geometry_column`: the column that places each network's crop (the synthetic faces' landmarks; the alignment's
    once `faces` found them; None: every network reads the whole image); `point_columns`: label columns moved with
    the pixels by an augmentation (a landmarks task's labels); `record`: what the stages found, for splits.json, and
    `undecodable`, per split the "path: reason" of each image the prior features stage could not decode."""

    processor: ETFuserImageProcessor
    cache_dir: str | os.PathLike
    face_policy: str | None = None
    geometry_column: str | None = SYNTHETIC_GEOMETRY
    point_columns: Sequence[str] = ()
    record: dict[str, Any] = field(default_factory=dict)
    undecodable: dict[str, list[str]] = field(default_factory=dict)
    aligner: FaceAligner | None = None

    def faces(self, splits: Mapping[str, datasets.Dataset]) -> datasets.DatasetDict:
        """Each split's faces found once, as `analyze` finds them, under `face_policy`, cached in `<cache_dir>/faces`
        (`alignment.align_dataset`); how they were found is counted into `record["faces"]`. Unchanged without a
        policy."""
        splits = datasets.DatasetDict(splits)
        if self.face_policy is None:
            return splits
        aligner = self.aligner or FaceAligner(cache_dir=self.cache_dir)
        aligned = datasets.DatasetDict({name: align_dataset(split, self.face_policy, aligner,
                                                            Path(self.cache_dir) / "faces")
                                        for name, split in splits.items()})
        self.record["faces"] = {"policy": self.face_policy,
                                "counts": {name: face_counts(split) for name, split in aligned.items()}}
        self.geometry_column = ALIGNMENT_COLUMN
        return aligned

    def views(self, splits: Mapping[str, datasets.Dataset], augmentations: Sequence[Augmentation]
              ) -> datasets.DatasetDict:
        """The training split replaced by the views every setting of `augmentations` draws from (`render_views`),
        before the prior features, so each view's priors are cached from that view; unchanged where none renders."""
        splits = datasets.DatasetDict(splits)
        if augmentations:
            points = list(dict.fromkeys([column for column in (self.geometry_column, *self.point_columns) if column]))
            splits["train"] = render_views(splits["train"], augmentations, "image", points)
        return splits

    def prior_features(self, splits: Mapping[str, datasets.Dataset],
                       readers: Mapping[str, ETFuserPreTrainedModel]) -> datasets.DatasetDict:
        """Every view of each reader (view name -> a priors-only model, the recipe's view "" first, all over the same
        priors) from one run of the priors per image, each on its own crop of the face, cached in
        `<cache_dir>/features` (`PriorFeatureCache`). Images that cannot be decoded leave their split, counted into
        `record["undecodable"]` and `record["sizes"]`."""
        splits = datasets.DatasetDict(splits)
        undecodable = self.undecodable
        (view, reader), *more_views = readers.items()
        cache = PriorFeatureCache(reader, self.processor, Path(self.cache_dir) / "features", view=view,
                                  geometry_column=self.geometry_column, more_views=dict(more_views))
        for name, split in splits.items():
            splits[name] = cache(split)
            if cache.undecodable:
                undecodable[name] = cache.undecodable
        if undecodable:
            self.record["undecodable"] = {name: {"count": len(found), "first": found[:SHOWN_PER_REASON]}
                                          for name, found in undecodable.items()}
            self.record["sizes"] = {name: len(split) for name, split in splits.items()}
        return splits

    def pixels(self, splits: Mapping[str, datasets.Dataset]) -> datasets.DatasetDict:
        """Each image decoded once into `<cache_dir>/images` (`image_cache.cache_decoded_images`)."""
        return cache_decoded_images(splits, self.processor, Path(self.cache_dir) / "images")

    def prepare(self, splits: Mapping[str, datasets.Dataset], readers: Mapping[str, ETFuserPreTrainedModel] | None,
                augmentations: Sequence[Augmentation] = ()) -> datasets.DatasetDict:
        """All stages in order; `readers` None: no prior-feature or pixel cache (the priors run in every forward)."""
        splits = self.views(self.faces(splits), augmentations)
        if readers is None:
            return splits
        return self.pixels(self.prior_features(splits, readers))


__all__ = ["SYNTHETIC_GEOMETRY", "FacePipeline", "face_policy"]
