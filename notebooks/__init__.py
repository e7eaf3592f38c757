"""The report notebooks, shipped in the package as `pipelines.notebooks` (package data)."""
