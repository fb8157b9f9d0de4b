"""Multi-process runs: who this process is, its process group, and what all ranks must agree on."""
