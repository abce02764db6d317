"""Mean absolute error (e.g. age in years).

Local `evaluate` module shipped with etfuser_hf (loads offline): `evaluate.load(path_to_this_folder)`.
The arithmetic lives in `etfuser_hf.metrics.mae`, shared with the Trainer hook.
"""

import datasets
import evaluate

from etfuser_hf.metrics import mae

_CITATION = "etfuser_hf (Apache-2.0)"


class Mae(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description="predictions and references, one per example",
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        return {"mae": mae(predictions, references)}
