"""Data-efficiency sweeps: cells (arm × N × seed), their records, the table and the plot."""
