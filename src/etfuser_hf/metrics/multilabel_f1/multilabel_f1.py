"""Multi-label F1 (macro or micro) of multi-hot 0/1 predictions.

Local `evaluate` module shipped with etfuser_hf (loads offline): `evaluate.load(path_to_this_folder)`.
The arithmetic lives in `etfuser_hf.metrics.multilabel_f1`, shared with the Trainer hook.
"""

import datasets
import evaluate

from etfuser_hf.metrics import multilabel_f1

_CITATION = "etfuser_hf (Apache-2.0)"


class MultilabelF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description="predictions and references, one per example",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions, references, average="macro"):
        return {"multilabel_f1": multilabel_f1(predictions, references, average)}
