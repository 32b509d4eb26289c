"""State probes: how much privileged state (object and gripper positions) frozen features carry."""
