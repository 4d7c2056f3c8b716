"""Loaded model versions for the stages, swapped between batches (hot reload).

`ModelRegistry.current()` is the promoted version ('latest' follows the CURRENT
pointer); `get(version)` loads any version once and keeps it, so the deep worker
can score a record with the version stage 1 used for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from models.artifacts import CURRENT, ModelBundle, load_bundle, resolve
from models.errors import ArtifactError

log = structlog.get_logger("fraudstream.registry")


class ModelRegistry:
    def __init__(self, root: Path, version: str, deep: bool = True, threads: int = 1) -> None:
        self.root = root
        self.deep = deep  # stage 1 loads XGBoost only, and never imports torch
        # XGBoost threads per booster. Small micro-batches gain nothing from more, and on a
        # shared host idle OpenMP workers spin against the broker and the other stage.
        self.threads = threads
        self.requested = version
        self._bundles: dict[str, ModelBundle] = {}
        self._pointer_mtime = self._mtime()
        self._current = self.get(resolve(root, version).name)
        self.broken: str | None = None  # why the promoted version cannot be used, if it cannot

    def _mtime(self) -> float:
        try:
            return os.stat(self.root / CURRENT).st_mtime
        except FileNotFoundError:
            return 0.0

    def get(self, version: str) -> ModelBundle:
        """A version's bundle, loaded on first use."""
        bundle = self._bundles.get(version)
        if bundle is None:
            bundle = load_bundle(self.root / version, deep=self.deep)
            bundle.booster.set_param({"nthread": self.threads})
            self._bundles[version] = bundle
            log.info("model_loaded", version=version, trees=bundle.n_trees)
        return bundle

    def current(self) -> ModelBundle:
        """The version to score with; ArtifactError while the promoted one cannot be loaded."""
        if self.broken is not None:
            raise ArtifactError(self.broken)
        return self._current

    def refresh(self) -> bool:
        """Between batches: follow a promotion of 'latest'. True when the version changed."""
        if self.requested != "latest":
            return False
        mtime = self._mtime()
        if mtime == self._pointer_mtime:
            return False
        self._pointer_mtime = mtime
        try:
            new = self.get(resolve(self.root, "latest").name)
        except ArtifactError as exc:
            # The operator retired the old version; scoring with it silently would hide the failure.
            self.broken = str(exc)
            log.error("promoted_model_unusable", error=str(exc))
            return False
        self.broken = None
        changed = new.version != self._current.version
        if changed:
            log.info("model_promoted", old=self._current.version, new=new.version)
        self._current = new
        return changed
