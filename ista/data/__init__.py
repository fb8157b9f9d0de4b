"""Image data for search and training: readers, the two-stage split, and loaders."""
