"""A run in progress and its result: the sampling worker, the trajectory it records, RunResult."""
