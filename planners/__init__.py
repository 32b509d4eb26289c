"""Latent transition models and the CEM imagination planner.

Modules, one job each: ``latent`` (token map → pooled, standardised latent), ``dynamics`` (z' = T(z, a)),
``data`` (transitions from the feature cache), ``fit`` (multi-step training, error vs horizon), ``world_model``
(one checkpoint file), ``cem`` (the search, pure maths), ``mpc`` (receding-horizon planning in a task),
``experiment`` (``robrep plan``: data → world model → evaluation → plan.csv).
"""
