"""In-domain pretraining: one objective per encoder family and one shared, time-budgeted loop."""
