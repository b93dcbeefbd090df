"""Fitting the component scorers (P calibration, style probe, composition probe, novelty bank) offline."""
