"""The training-loop kit every trainer uses: schedules, checkpointing with resume, NaN stop, Ctrl-C, metrics."""
