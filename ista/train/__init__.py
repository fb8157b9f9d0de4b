"""The one epoch loop, the one step engine, learning-rate schedules and resumable checkpoints."""
