"""A run directory, the one home of what a run writes and what is read back from it: its file names
(`files`), atomic writes (`atomic`), its one writer (`lock`), the records a run writes (`records`) and the
plain reading of them (`read`). It imports nothing else of ista, so every other package may use it."""
