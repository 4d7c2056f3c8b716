"""Loaded model versions for the stages, swapped between batches (hot reload).

`ModelRegistry.current()` is the promoted version ('latest' follows the CURRENT
pointer); `get(version)` loads any version once and keeps it, so the deep worker
can score a record with the version stage 1 used for it.

A bad deploy never stops a service: a promoted version that cannot be loaded marks
the registry broken (the scorer then decides by rules, the deep worker from the
carried XGBoost score) until a loadable version is promoted; a service started
during a bad deploy starts that way. Version names are validated before they
become paths (`models.artifacts.check_version`), wherever they come from: the
configuration, the CURRENT pointer, or a buffer record.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

import structlog

from models.artifacts import CURRENT, ModelBundle, check_version, load_bundle, resolve
from models.errors import ArtifactError

log = structlog.get_logger("fraudstream.registry")

# A version that failed to load is not tried again for this long (a bad version in many
# buffer records would otherwise be re-read from disk on every batch).
RETRY_FAILED_S = 30.0


class Versions(Protocol):
    """What the stages ask of their model versions (`ModelRegistry`, `stream.testing.FixedVersions`)."""

    requested: str
    broken: str | None

    def get(self, version: str) -> ModelBundle: ...

    def current(self) -> ModelBundle: ...

    @property
    def usable(self) -> ModelBundle | None: ...

    def refresh(self) -> bool: ...


class ModelRegistry:
    def __init__(self, root: Path, version: str, deep: bool = True, threads: int = 1) -> None:
        self.root = root
        self.deep = deep  # stage 1 loads XGBoost only, and never imports torch
        # XGBoost threads per booster. Small micro-batches gain nothing from more, and on a
        # shared host idle OpenMP workers spin against the broker and the other stage.
        self.threads = threads
        self.requested = version
        self._bundles: dict[str, ModelBundle] = {}
        self._failed: dict[str, tuple[float, str]] = {}  # version -> (when, why it did not load)
        self._pointer_mtime = self._mtime()
        self._current: ModelBundle | None = None
        self._retried_at = time.monotonic()
        self.broken: str | None = None  # why the promoted version cannot be used, if it cannot
        try:
            self._current = self.get(resolve(root, version).name)
        except ArtifactError as exc:
            # Started during a bad deploy: run degraded until a loadable version is promoted.
            self.broken = str(exc)
            log.error("model_unusable_at_start", requested=version, error=str(exc))

    def _mtime(self) -> float:
        try:
            return os.stat(self.root / CURRENT).st_mtime
        except FileNotFoundError:
            return 0.0

    def get(self, version: str) -> ModelBundle:
        """A version's bundle, loaded on first use; ArtifactError when it cannot be."""
        bundle = self._bundles.get(version)
        if bundle is not None:
            return bundle
        failed = self._failed.get(version)
        if failed is not None and time.monotonic() - failed[0] < RETRY_FAILED_S:
            raise ArtifactError(failed[1])
        try:
            bundle = load_bundle(self.root / check_version(version), deep=self.deep)
        except ArtifactError as exc:
            self._failed[version] = (time.monotonic(), str(exc))
            raise
        bundle.booster.set_param({"nthread": self.threads})
        self._bundles[version] = bundle
        self._failed.pop(version, None)
        log.info("model_loaded", version=version, trees=bundle.n_trees)
        return bundle

    def current(self) -> ModelBundle:
        """The version to score with; ArtifactError while the promoted one cannot be loaded."""
        if self.broken is not None or self._current is None:
            raise ArtifactError(self.broken or "no model version loaded")
        return self._current

    @property
    def usable(self) -> ModelBundle | None:
        """The promoted version when it can be used, else None (never raises)."""
        return None if self.broken is not None else self._current

    def refresh(self) -> bool:
        """Between batches: follow a promotion of 'latest'. True when the version changed."""
        if self.requested != "latest":
            if self._current is None and time.monotonic() - self._retried_at >= RETRY_FAILED_S:
                return self._retry(self.requested)  # a pinned version that did not load at start
            return False
        mtime = self._mtime()
        if mtime == self._pointer_mtime and self._current is not None:
            return False
        if mtime == self._pointer_mtime and time.monotonic() - self._retried_at < RETRY_FAILED_S:
            return False  # broken, pointer unchanged: look again now and then (a file may be restored in place)
        self._pointer_mtime = mtime
        return self._retry("latest")

    def _retry(self, requested: str) -> bool:
        self._retried_at = time.monotonic()
        try:
            new = self.get(resolve(self.root, requested).name)
        except ArtifactError as exc:
            # The operator retired the old version; scoring with it silently would hide the failure.
            if self.broken != str(exc):
                log.error("promoted_model_unusable", error=str(exc))
            self.broken = str(exc)
            return False
        if self.broken is not None:
            log.info("model_usable_again", version=new.version)
        self.broken = None
        changed = self._current is None or new.version != self._current.version
        if changed:
            log.info("model_promoted", old=self._current.version if self._current else None, new=new.version)
        self._current = new
        return changed
