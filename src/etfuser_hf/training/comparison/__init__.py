"""What is compared: the tasks, the rows, the recipe and its objective, the splits, and training every row of every
task."""
