"""Measured points kept on disk, one file per (image, codec, setting, measuring code), so that re-running the
evaluation after a new model only measures what changed: the key holds the image file's hash and everything that
decides the result, never a timestamp."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def key_of(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class PointCache:
    """<root>/<image sha256[:16]>/<key>.json (+ <key>.npy for FID features); root=None keeps nothing."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            ignore = root / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# measured points, rebuilt by bench/evaluate.py: never committed\n*\n")

    def _path(self, image_sha: str, key: str, suffix: str) -> Path | None:
        return None if self.root is None else self.root / image_sha[:16] / f"{key}{suffix}"

    def get(self, image_sha: str, key: str) -> dict[str, Any] | None:
        path = self._path(image_sha, key, ".json")
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a half-written or damaged entry is measured again

    def put(self, image_sha: str, key: str, record: dict[str, Any]) -> None:
        path = self._path(image_sha, key, ".json")
        if path is not None:
            _atomic_write(path, json.dumps(record, sort_keys=True).encode())

    def get_array(self, image_sha: str, key: str) -> np.ndarray | None:
        path = self._path(image_sha, key, ".npy")
        if path is None or not path.is_file():
            return None
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None

    def put_array(self, image_sha: str, key: str, array: np.ndarray) -> None:
        path = self._path(image_sha, key, ".npy")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
            np.save(temporary, array)
            temporary.replace(path)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename, so an interrupted run leaves either the old entry or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
