"""Comparing two generators on the same prompts and seeds: automatic metrics with bootstrap intervals over prompts,
a simulated A/B test, and the pair set people vote on (``rewarddance eval generators``)."""
