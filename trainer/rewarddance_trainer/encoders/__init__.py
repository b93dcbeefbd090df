"""Frozen-at-scoring-time encoders over open_clip: named JSON configs, a factory, training and the feature cache."""
