"""The ``robrep`` command line: ``robrep <sub-command> [hydra overrides]``.

Each sub-command is a Hydra app whose primary config is ``configs/<sub-command>.yaml`` (its code:
``robrep/commands/<sub-command with _ for ->.py``), so
``robrep collect task=push num_demos=500`` overrides config values, ``--cfg job`` prints the
resolved config, ``--help`` shows the config groups, and ``--multirun`` sweeps.

:func:`main` sets ``MUJOCO_GL=egl`` (when unset) before it imports the command, so MuJoCo renders
headless; importing this module sets nothing.
"""

from __future__ import annotations

import importlib
import os
import sys

from robrep.config import VERSION_BASE, config_dir

#: sub-command -> (module under robrep.commands with ``run(cfg)``, one-line description)
COMMANDS: dict[str, str] = {
    "quickstart": "the main job on its embedded default (see README)",
    "collect": "scripted-expert demonstrations -> robomimic HDF5 (task=, num_demos=, out=)",
    "video": "roll out the scripted expert and write an MP4/GIF (task=, episodes=, out=)",
    "pretrain": "in-domain pretraining of an encoder family (encoder=, data=[...], budget_minutes=, out=)",
    "features": "frozen features of every frame of a demo file -> float16 cache (encoder=, dataset=, weights=)",
    "probe": "ridge/MLP probes of object & gripper state from frozen features + gate (encoder=, dataset=, weights=)",
    "train": "behaviour cloning on frozen features or a from-scratch CNN -> policy checkpoint (policy=, encoder=, dataset=, n=, seed=)",
    "cell": "one sweep cell: train (arm=, n=, seed=) and evaluate -> <sweep_dir>/cells/<arm>_n<N>_s<seed>.json",
    "sweep": "data-efficiency sweep: arms x N x seeds -> table, summary, paired differences, plot (resumable)",
    "eval": "roll a policy checkpoint out in its task: success rate + Wilson 95 % interval, videos (checkpoint=, episodes=)",
    "plan": "latent world model + CEM imagination planner: goal-reaching success, ms/action, error vs horizon (task=, encoder=)",
    "export": "a policy (or encoder) as one ONNX / TorchScript file, checked against PyTorch (checkpoint=, format=)",
    "export-dataset": "a demo file as a LeRobot v2.1 dataset (dataset=, format=lerobot, out=); read back: dataset=lerobot:<dir>",
}


def command_module(command: str) -> str:
    """The module of ``command`` under :mod:`robrep.commands` (hyphens become underscores: ``export-dataset`` ->
    ``robrep.commands.export_dataset``); its config is ``configs/<command>.yaml``."""
    return f"robrep.commands.{command.replace('-', '_')}"

def usage() -> str:
    lines = ["usage: robrep <command> [key=value ...] [--cfg job] [--multirun]", "", "commands:"]
    lines += [f"  {name:<15} {desc}" for name, desc in COMMANDS.items()]
    lines += ["", "`robrep <command> --help` lists that command's config groups and options;",
              "`robrep <command> --cfg job` prints its resolved config without running it."]
    return "\n".join(lines)


def command_help(command: str) -> str:
    """``robrep <command> --help``: what the command does, the config groups *it* composes (with the options of
    each, from ``configs/<group>/``) and its resolved top-level keys — not every group in ``configs/``."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from robrep.config import compose

    cfg = compose(command, return_hydra_config=True)
    choices = {g: c for g, c in cfg.hydra.runtime.choices.items() if not g.startswith("hydra/")}
    doc = (importlib.import_module(command_module(command)).__doc__ or "").strip()
    lines = [f"usage: robrep {command} [key=value ...] [--cfg job] [--multirun]", "", doc, "",
             "config groups (group=option):"]
    for group, choice in sorted(choices.items()):
        options = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
        lines.append(f"  {group} = {choice}    (options: {', '.join(options)})")
    own = OmegaConf.to_container(cfg, resolve=False)
    own.pop("hydra", None)
    groups = {g.split("/")[0] for g in choices}
    lines += ["", "keys (override with key=value; `--cfg job` prints them resolved):"]
    lines += [f"  {k}: {v if not isinstance(v, (dict, list)) else '...'}" for k, v in own.items() if k not in groups]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robrep`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, overrides = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"robrep: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    # The entry point owns the process environment: MuJoCo reads MUJOCO_GL when `mujoco` is first
    # imported (by the command module or its imports, also for --help), so set it before that.
    os.environ.setdefault("MUJOCO_GL", "egl")
    if overrides[:1] in (["--help"], ["-h"]):
        print(command_help(command))
        return 0
    import hydra

    module = importlib.import_module(command_module(command))
    app = hydra.main(config_path=config_dir(), config_name=command, version_base=VERSION_BASE)(module.run)
    saved = sys.argv
    sys.argv = [f"robrep {command}", *overrides]
    try:
        app()
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
