"""Protocol integrity (issue 19): a fixed, fresh test split that nothing was chosen on, the same sweep candidates for
every compared row, the gate measured and not weight-decayed, LoRA that trains what it should, a probe that reads
no test label before its one test prediction, scipy's permutation test and the Holm correction. Select with
`-k "integrity or fresh or gate or lora or holm"`."""

from __future__ import annotations

import numpy as np
import pytest

from etfuser_hf.data.synthetic_faces import make_synthetic_faces, synthetic_face
from etfuser_hf.training.splits import SAME_TRAIN_IMAGES, TEST_FIRST_INDEX, draw_train, synthetic_splits

# Every sweep and run before the fixed test split drew from synthetic indices 0..1999 (docs/recipe.md).
EARLIER_INDICES = range(0, 2000)


def _labels(split) -> list[tuple]:
    return list(zip(split["expression"], split["age_group"], map(tuple, map(np.ravel, split["landmarks"]))))


def test_fresh_test_split_stays_put_when_train_and_validation_sizes_change():
    small, small_record = synthetic_splits({"train": 3, "validation": 2, "test": 3}, image_size=32, seed=4)
    large, large_record = synthetic_splits({"train": 7, "validation": 5, "test": 3}, image_size=32, seed=4)
    assert _labels(small["test"]) == _labels(large["test"])
    assert small_record.origin["test"] == large_record.origin["test"]
    assert small_record.generator["test_first_index"] == TEST_FIRST_INDEX
    assert "1000000..1000002" in small_record.origin["test"]
    # the test images are the generator's indices from the fixed offset, none of those any sweep used
    expected = [synthetic_face(TEST_FIRST_INDEX + i, 32, 4) for i in range(3)]
    assert [row["expression"] for row in expected] == small["test"]["expression"]
    assert TEST_FIRST_INDEX >= EARLIER_INDICES.stop
    assert small_record.train_sampling == SAME_TRAIN_IMAGES  # the default: every seed the same training images


def test_fresh_split_refuses_train_and_validation_that_would_reach_the_test_range():
    with pytest.raises(ValueError, match=r"train \+ validation .* would reach the synthetic test split.*1000000"):
        synthetic_splits({"train": TEST_FIRST_INDEX - 10, "validation": 11, "test": 2})


def test_fresh_generator_slice_far_along_is_the_same_as_its_samples():
    far = make_synthetic_faces(2, image_size=32, seed=9, first_index=5_000_000)
    assert far["age_group"] == [synthetic_face(5_000_000 + i, 32, 9)["age_group"] for i in range(2)]
    with pytest.raises(ValueError, match="first_index must be a non-negative int"):
        make_synthetic_faces(2, image_size=32, first_index=-1)


def test_integrity_resample_train_draws_each_seed_anew_from_a_fixed_pool():
    splits, record = synthetic_splits({"train": 4, "validation": 2, "test": 2}, image_size=32, seed=4, train_pool=10)
    assert len(splits["train"]) == 10 and record.sizes["train"] == 4 and record.sizes["train_pool"] == 10
    assert "--resample-train" in record.train_sampling and "2000000" in record.origin["train"]
    first, again, second = (draw_train(splits["train"], 4, seed) for seed in (0, 0, 1))
    assert len(first) == 4 and _labels(first) == _labels(again) and _labels(first) != _labels(second)
    assert set(_labels(first)) <= set(_labels(splits["train"]))
    same, _ = synthetic_splits({"train": 4, "validation": 2, "test": 2}, image_size=32, seed=4)
    assert _labels(same["validation"]) == _labels(splits["validation"])  # the pool moves no other split
    with pytest.raises(ValueError, match="train_pool: a pool to draw 4 training images from needs more than 4"):
        synthetic_splits({"train": 4, "validation": 2, "test": 2}, image_size=32, train_pool=4)
