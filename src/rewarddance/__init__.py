"""rewarddance: reward scoring for text-to-image generation (core package: CLI and shared helpers)."""

__version__ = "0.1.0"
