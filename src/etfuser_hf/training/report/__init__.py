"""What is reported: the task tables and their statistics, the plots, and the run folder."""
