"""Latent transition models and the CEM imagination planner (issue 5)."""
