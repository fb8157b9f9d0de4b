"""The one training engine, learning-rate schedules and resumable checkpoints."""
