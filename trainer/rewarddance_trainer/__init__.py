"""Offline half of rewarddance: datasets (shapes world, importers), encoders, reward models, generator."""
