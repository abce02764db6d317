"""Inter-ocular normalised mean error of landmarks ((N, 2K) flattened (x, y) per image).

Local `evaluate` module shipped with etfuser_hf (loads offline): `evaluate.load(path_to_this_folder)`.
The arithmetic lives in `etfuser_hf.metrics.nme`, shared with the Trainer hook.
"""

import datasets
import evaluate

from etfuser_hf.metrics import nme

_CITATION = "etfuser_hf (Apache-2.0)"


class Nme(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description="predictions and references, one per example",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions, references, interocular_indices=(36, 45)):
        return {"nme": nme(predictions, references, interocular_indices)}
