"""The demo generator: a small text-and-reference conditioned diffusion model and its training."""
