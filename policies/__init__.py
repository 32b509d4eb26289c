"""Behaviour-cloning heads on frozen encoder features (issue 4)."""
