"""Performance benchmarks of kohakuriver-lab (``python -m benchmarks``)."""
