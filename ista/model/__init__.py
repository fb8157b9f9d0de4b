"""The found model in use: loaded in Python, exported to run without ista, asked to classify images, and
timed where it will run."""
