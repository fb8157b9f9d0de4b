"""Launching seeds as Slurm array jobs (or local processes) and following their state."""
