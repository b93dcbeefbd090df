"""Importers that map public preference datasets (Pick-a-Pic v2, HPDv2, ImageRewardDB) into the reward-dataset
schema (``rewarddance data import``; see docs/importers.md for what maps to what)."""
