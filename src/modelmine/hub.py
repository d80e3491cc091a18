"""Model names resolved to local folders, never downloaded.

A model argument (``--set captioner=blip2:NAME``, ``--set features=dino:NAME``, ``--generator``) is a
local folder or a Hugging Face hub id. A hub id is resolved to its snapshot in the local cache
(``huggingface_hub.snapshot_download(..., local_files_only=True)``) before any ``from_pretrained``
sees it: some loaders still send requests for optional files (a PEFT adapter config) when given a
hub id with ``local_files_only``, and on a machine without network each waits through retries
before failing. A name that is neither a folder nor in the cache is one line at once.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download

from .errors import UserError


def local_model(name: str, what: str) -> str:
    """The local folder of ``name`` (itself, or its cached hub snapshot); ``what`` names it in errors."""
    if Path(name).exists():
        return str(name)

    try:
        return snapshot_download(repo_id=str(name), local_files_only=True)
    except Exception as e:  # not cached, or not a valid repo id: the same answer for the user
        raise UserError(
            f"cannot load {what} '{name}': not a local folder and not in the local Hugging Face cache "
            f"(nothing is downloaded) ({type(e).__name__})"
        ) from None
