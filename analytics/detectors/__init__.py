"""Vectorized detectors, one module per family of anomaly kinds."""
