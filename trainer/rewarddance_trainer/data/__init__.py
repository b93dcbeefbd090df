"""Reward-dataset format (DESIGN.md 3.1): schema, writer, validator and importers."""
