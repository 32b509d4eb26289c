"""Public weights by name: Hugging Face Hub repositories through the local HF cache.

A name resolves to files of a Hub repository (``timm:<model>`` → timm's ``hf_hub_id`` for it, ``hf-hub:<repo>``,
a Stable Diffusion repo id). The local cache (``huggingface_hub``'s, ``$HF_HUB_CACHE``) is read first, with no
network; only when a file is missing there and the Hub is not switched off (``HF_HUB_OFFLINE=1``) is it downloaded
into that cache. With neither, :class:`WeightsNotFoundError` names the exact files and the cache folder they
belong in, so the user can copy them over from a machine that has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

#: Files of a timm model repository, in the order they are looked for.
TIMM_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin", "open_clip_model.safetensors")


TIMM_INSTEAD = "pass the file itself: timm:<model>@<path to the file or its snapshot folder>"


class WeightsNotFoundError(FileNotFoundError):
    """Public weights named by a spec are neither in the local cache nor downloadable here."""


def _constants():
    from huggingface_hub import constants

    return constants


def cache_folder(repo_id: str, repo_type: str = "model") -> Path:
    """Where the HF cache keeps ``repo_id``: ``<HF_HUB_CACHE>/<type>s--<org>--<name>``."""
    return Path(_constants().HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def _missing(repo_id: str, files: Sequence[str], why: str, every: bool = False, instead: str = "") -> WeightsNotFoundError:
    folder = cache_folder(repo_id)
    which = f"all of {list(files)}" if every else f"one of {list(files)}"
    return WeightsNotFoundError(
        f"weights of Hugging Face Hub repo {repo_id!r} not found: {why}. Put {which} in "
        f"{folder}/snapshots/<revision>/ and write <revision> into {folder}/refs/main (the layout "
        f"`huggingface-cli download {repo_id}` leaves on a machine with network), then rerun"
        + (f"; or {instead}" if instead else ""))


def offline() -> bool:
    """The Hub is switched off (``HF_HUB_OFFLINE``)."""
    return bool(_constants().HF_HUB_OFFLINE)


def hub_file(repo_id: str, filenames: Sequence[str], revision: str | None = None, instead: str = "") -> Path:
    """The first of ``filenames`` in Hub repo ``repo_id``: from the local cache, else downloaded into it (online
    only). Raises :class:`WeightsNotFoundError` naming the files and the folder to place them in."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name, revision=revision)
        if isinstance(hit, str):
            return Path(hit)
    if offline():
        raise _missing(repo_id, filenames, "not in the local cache and the Hub is offline (HF_HUB_OFFLINE)",
                       instead=instead)
    errors = []
    for name in filenames:
        try:
            return Path(hf_hub_download(repo_id, name, revision=revision, etag_timeout=10))
        except Exception as exc:  # missing file in the repo, or no network
            errors.append(f"{name}: {type(exc).__name__}")
    raise _missing(repo_id, filenames, "not in the local cache and the download failed (" + "; ".join(errors) + ")",
                   instead=instead)


def hub_snapshot(repo_id: str, required: Sequence[str], revision: str | None = None) -> Path:
    """The local snapshot folder of Hub repo ``repo_id`` holding every file of ``required`` (relative paths;
    e.g. a diffusers pipeline's ``unet/config.json``): from the cache, else downloaded (online only)."""
    from huggingface_hub import snapshot_download

    folder = cache_folder(repo_id)
    ref = folder / "refs" / (revision or "main")
    if ref.is_file():
        snap = folder / "snapshots" / ref.read_text().strip()
        if all((snap / r).exists() for r in required):
            return snap
    if offline():
        raise _missing(repo_id, required, "not in the local cache and the Hub is offline (HF_HUB_OFFLINE)", every=True,
                       instead="pass the folder itself (sd:<folder>)")
    try:
        snap = Path(snapshot_download(repo_id, revision=revision, etag_timeout=10,
                                      allow_patterns=sorted({f"{Path(r).parent.as_posix()}/*" if "/" in r else r
                                                             for r in required})))
    except Exception as exc:
        raise _missing(repo_id, required, f"not in the local cache and the download failed ({type(exc).__name__})",
                       every=True, instead="pass the folder itself (sd:<folder>)")
    return snap


def timm_repo(name: str) -> str:
    """The Hub repository timm downloads model ``name`` (``<architecture>.<tag>``) from; ValueError if timm has no
    pretrained weights of that name."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:
        cfg = None
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise ValueError(f"timm has no pretrained weights named {name!r} on the Hub (timm.list_pretrained() lists "
                         "them); pass a file instead: timm:<model>@<path>")
    return str(repo)


def timm_name(repo_id: str) -> str:
    """The timm model name of a timm-layout Hub repo (``timm/<name>``, or its ``config.json``'s architecture)."""
    org, _, rest = repo_id.partition("/")
    if org == "timm" and rest:
        return rest
    import json

    config = json.loads(hub_file(repo_id, ("config.json",)).read_text())
    arch = config.get("architecture")
    if not arch:
        raise ValueError(f"hub repo {repo_id!r} has no timm 'architecture' in its config.json")
    tag = (config.get("pretrained_cfg") or {}).get("tag")
    return f"{arch}.{tag}" if tag else str(arch)


def timm_weights_file(spec: str) -> tuple[str, Path]:
    """``timm:<model>[@<path>]`` or ``hf-hub:<repo>`` (scheme included) → ``(timm model name, weights file)``:
    the path when given, else the model's file from the Hub (cache first)."""
    from robrep.encoders.weights import resolve_file

    scheme, _, arg = spec.partition(":")
    if scheme == "hf-hub":
        name = timm_name(arg)
        return name, hub_file(arg, TIMM_FILES, instead=TIMM_INSTEAD)
    name, at, path = arg.partition("@")
    if not name:
        raise ValueError(f"expected weights='timm:<timm model name>[@<path>]', got {spec!r}")
    import timm

    if not timm.is_model(name.partition(".")[0]):
        raise ValueError(f"timm has no model named {name!r} (timm.list_models() lists them), in {spec!r}")
    if at:
        if not path:
            raise ValueError(f"expected weights='timm:<timm model name>@<path>', got {spec!r}")
        return name, resolve_file(path, TIMM_FILES)
    return name, hub_file(timm_repo(name), TIMM_FILES, instead=TIMM_INSTEAD)
