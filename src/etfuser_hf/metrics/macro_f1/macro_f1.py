"""Macro-F1: unweighted mean of per-class F1.

Local `evaluate` module shipped with etfuser_hf (loads offline): `evaluate.load(path_to_this_folder)`.
The arithmetic lives in `etfuser_hf.metrics.macro_f1`, shared with the Trainer hook.
"""

import datasets
import evaluate

from etfuser_hf.metrics import macro_f1

_CITATION = "etfuser_hf (Apache-2.0)"


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description="predictions and references, one per example",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None):
        return {"macro_f1": macro_f1(predictions, references, num_labels)}
