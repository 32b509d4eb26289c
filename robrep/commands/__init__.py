"""One module per ``robrep`` sub-command, each with ``run(cfg: DictConfig) -> None``."""
