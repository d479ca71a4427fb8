"""Pure functions that return argv lists. No I/O here: the runner executes what these build."""
