"""Training, evaluation and comparison with `transformers.Trainer`: the main job (`training.main`) and the pieces
it is built from."""
