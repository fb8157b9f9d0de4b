"""Search algorithms as tasks of the shared engine: two-stage ISTA-NAS (Algorithm 1), DARTS baseline."""
