"""The files of a run directory, each named once. A run is one directory; these are what it holds."""

CONFIG = "config.json"  # the resolved settings: a run resumes only with the same
DATA = "data.json"  # what the run's data held: `ista.data.datasets.Facts`
ENV = "env.json"  # versions, host, devices, how it was launched and resumed
METRICS = "metrics.jsonl"  # one JSON object per finished epoch
GENOTYPE = "genotype.json"  # the found (or trained) genotype, updated each epoch by a search
PICTURE = "genotype.png"  # its cells, drawn when the run ends
DRAWS = "draws.json"  # a sparse-coding run's A and initial b
SELECTION = "selection.json"  # how a `best:` genotype was chosen
CHECKPOINT = "checkpoint.pt"  # the latest epoch or step checkpoint
PROGRESS = "progress.json"  # the running epoch's progress, for `ista launch --status --watch`
RESULT = "result.json"  # written last: its presence says the run finished
LATENCY = "latency.json"  # what `ista params RUN --latency` measured
TENSORBOARD = "tensorboard"  # the event folder, with log.tensorboard=true
LOCK = "run.lock"  # the one writer's lock (`ista.rundir.lock`)
