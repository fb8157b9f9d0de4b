"""Search methods of the step engine: ISTA-NAS two-stage (Algorithm 1) and one-stage (Algorithm 2), DARTS."""
