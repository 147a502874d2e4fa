"""Pretrained weights that come from a download: are they here already, and can they be fetched?

Offline, open_clip's download retries for about a minute before it fails, and only after the
data would have been read. drgrade asks first: a tag whose file is not in the local cache, on a
machine that cannot reach the hub (or with ``HF_HUB_OFFLINE=1``), is reported at once with the
options that fix it, before anything is built.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

#: Where pretrained weights are fetched from (the Hugging Face hub serves open_clip's and FLAIR's text model).
HUB_HOST = "huggingface.co"
#: How long the reachability probe waits.
PROBE_SECONDS = 3.0


@functools.cache
def hub_reachable() -> bool:
    """Whether the hub answers a TCP connection within ``PROBE_SECONDS`` (asked once per process)."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False


def offline() -> bool:
    """No downloads: ``HF_HUB_OFFLINE`` is set, or the hub cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    return not hub_reachable()


def open_clip_cached(model_name: str, tag: str) -> Path | None:
    """The local file of open_clip's ``tag`` weights for ``model_name``, if already downloaded.

    open_clip prefers the hub entry (a safetensors file when there is one), else its URL cache.

    Args:
        model_name: the open_clip architecture (``RN50``).
        tag: the pretrained tag (``openai``).
    """
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    config = open_clip.get_pretrained_cfg(model_name, tag)
    hub = config.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return Path(found)
    url = config.get("url", "")
    if url:
        path = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if path.is_file():
            return path
    return None


def unavailable(what: str, option: str, example: str) -> str:
    """The message for weights that are neither cached nor downloadable, with the options that fix it.

    Args:
        what: the weights, in words (``RN50 CLIP weights 'openai'``).
        option: the option that names them (``--model.init_args.pretrained``).
        example: a file name for the example.
    """
    reason = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else f"{HUB_HOST} cannot be reached"
    return (
        f"{what} are not in the local cache and {reason}: download them on a machine with network "
        f"access, copy the file here and pass {option} /path/to/{example}; or pass {option} null "
        "to start from random weights (results will not match the paper)"
    )
