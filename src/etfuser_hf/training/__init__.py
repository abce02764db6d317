"""Training, evaluation and comparison with `transformers.Trainer`, in three parts, each reading only those before it:
`run` (one model trained with one seed, and what is measured of it) <- `comparison` (the tasks, the rows, the recipe,
the splits, and training every row of every task) <- `report` (tables, statistics, plots, the run folder). The main job
(`training.main`) and the validation sweep (`training.validation_sweep`) are the entry points over all three; batches
come from the data wing (`etfuser_hf.data`)."""
