"""Text-conditioned diffusion generator for the shapes world (diffusers), and LoRA fine-tuning of user pipelines."""
