"""The learned reward model: a transformer over prompt tokens, image tokens and the four baseline signals, at
several scales (architectures are JSON files in ``configs/``), with its training recipe and validation."""
