"""Mean class accuracy — a local `evaluate` module shipped with etfuser_hf: `evaluate.load(path_to_this_folder)` works
offline. The metric itself is defined once, in `etfuser_hf.metrics`."""

from etfuser_hf.metrics import evaluate_metric_class

MeanClassAccuracy = evaluate_metric_class("mean_class_accuracy")
