"""RLHF of the generator against a served reward: PPO over the DDIM denoising chain with a KL penalty to the base."""
