"""Where things live on disk. Paths follow XDG and can be moved with environment variables."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache: converted models, the sandbox image's build files.

    SELFREPAIR_CACHE overrides it; otherwise $XDG_CACHE_HOME/selfrepair or ~/.cache/selfrepair.
    """
    override = os.environ.get("SELFREPAIR_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "selfrepair"


def models_dir() -> Path:
    return cache_dir() / "models"
