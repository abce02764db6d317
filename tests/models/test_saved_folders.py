"""A folder saved by the previous release (tests/models/fixtures/etfuser-0.1.0-tiny, commit 08203cf) still loads,
to the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from etfuser_hf import ETFuserForImageClassification

FIXTURE = Path(__file__).parent / "fixtures" / "etfuser-0.1.0-tiny"


def test_previous_release_folder_loads_to_the_same_logits():
    expected = json.loads((FIXTURE / "expected_logits.json").read_text())
    model, info = ETFuserForImageClassification.from_pretrained(FIXTURE, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    pixel_values = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.eval()(pixel_values=pixel_values).logits
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]), rtol=1e-5, atol=1e-5)
