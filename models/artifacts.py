"""Model artifacts: `artifacts/<version>/` with the two models, the feature spec and
a manifest. Nothing here uses pickle: XGBoost loads UBJSON, torch loads a state
dict with `weights_only=True`, and every file's sha256 is checked against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb

from models.decision import Thresholds
from models.errors import ArtifactError
from models.featureset import DEFAULT_DELAY_DAYS, FEATURE_NAMES, FEATURE_SET_VERSION
from models.xgb import Forest

if TYPE_CHECKING:
    from models.deep import HybridNet

# torch is imported where a torch model is saved or loaded: the scorer, which needs only
# XGBoost, then never pays torch's memory (several hundred MB resident).

XGB_FILE = "xgb.ubj"
DEEP_FILE = "deep.pt"
MLP_FILE = "mlp_only.pt"
SPEC_FILE = "feature_spec.json"
MANIFEST = "manifest.json"
# A version is a folder name under the artifacts root, never a path: no separators, no
# leading dot (so neither `..` nor a hidden folder), at most 64 characters.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CURRENT = "CURRENT"  # a file in the artifacts root naming the promoted version


@dataclass(frozen=True)
class ModelBundle:
    """A loaded version: what the stages need to score."""

    version: str
    path: Path
    booster: xgb.Booster
    deep: HybridNet | None  # None when loaded with deep=False
    mlp_only: HybridNet | None
    thresholds: Thresholds
    manifest: dict[str, Any]
    # The same trees for micro-batches (bit-identical scores); None when not applicable.
    forest: Forest | None = None

    @property
    def net(self) -> HybridNet:
        """The deep model; ArtifactError when the bundle was loaded without it."""
        if self.deep is None:
            raise ArtifactError(f"model {self.version} was loaded without its deep model")
        return self.deep

    @property
    def n_trees(self) -> int:
        return int(self.booster.num_boosted_rounds())

    @property
    def delay_days(self) -> int:
        """The label delay the version's features were trained with: every feature store that
        scores with this version computes terminal risk with the same delay."""
        return int(self.manifest.get("train_config", {}).get("delay_days", DEFAULT_DELAY_DAYS))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def library_versions() -> dict[str, str]:
    import torch

    return {"python": platform.python_version(), "xgboost": xgb.__version__, "torch": torch.__version__, "numpy": np.__version__}


def save_bundle(
    out: Path,
    booster: xgb.Booster,
    deep: HybridNet,
    mlp_only: HybridNet | None,
    thresholds: Thresholds,
    extra: dict[str, Any],
) -> Path:
    """Write a version folder; `out`'s name is the version."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / XGB_FILE))
    torch.save(deep.state_dict(), out / DEEP_FILE)
    files = [XGB_FILE, DEEP_FILE, SPEC_FILE]
    if mlp_only is not None:
        torch.save(mlp_only.state_dict(), out / MLP_FILE)
        files.append(MLP_FILE)
    spec = {"feature_set_version": FEATURE_SET_VERSION, "features": list(FEATURE_NAMES)}
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    manifest = {
        "version": out.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "feature_set_version": FEATURE_SET_VERSION,
        "features": list(FEATURE_NAMES),
        "n_trees": int(booster.num_boosted_rounds()),
        "deep_arch": deep.arch.to_dict(),
        "mlp_arch": mlp_only.arch.to_dict() if mlp_only is not None else None,
        "thresholds": thresholds.to_dict(),
        "libraries": library_versions(),
        "files": {name: _sha256(out / name) for name in files},
        **extra,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=float))
    return out


def _load_net(path: Path, arch_dict: Any) -> HybridNet:
    import torch

    from models.deep import DeepArch, HybridNet

    if not isinstance(arch_dict, dict):
        raise ArtifactError(f"{path.parent / MANIFEST}: missing the architecture of {path.name}")
    net = HybridNet(DeepArch.from_dict(arch_dict))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path}: weights do not match the manifest's architecture: {exc}") from exc
    net.eval()
    return net


def load_bundle(path: Path, deep: bool = True) -> ModelBundle:
    """Load and verify a version folder; ArtifactError says what is wrong.

    deep=False skips the torch models (and torch itself): what stage 1 needs. Whatever is
    wrong with the folder — unreadable files, a manifest of the wrong shape — is an
    ArtifactError: a bad deploy must degrade a service, never crash it.
    """
    try:
        return _load_bundle(path, deep)
    except ArtifactError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: unusable model version: {type(exc).__name__}: {exc}") from exc


def _load_bundle(path: Path, deep: bool) -> ModelBundle:
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise ArtifactError(f"{path}: no {MANIFEST} (not a model version folder)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{manifest_path}: not valid JSON: {exc}") from exc
    for name, digest in manifest.get("files", {}).items():
        f = path / name
        if not f.exists():
            raise ArtifactError(f"{path}: missing file {name}")
        if _sha256(f) != digest:
            raise ArtifactError(f"{f}: checksum does not match the manifest (corrupted or replaced)")
    if manifest.get("features") != list(FEATURE_NAMES):
        n = len(manifest.get("features") or [])
        raise ArtifactError(
            f"{path}: model expects {n} features of set {manifest.get('feature_set_version')!r}, "
            f"this build computes {len(FEATURE_NAMES)} of set {FEATURE_SET_VERSION!r}"
        )
    booster = xgb.Booster()
    try:
        booster.load_model(str(path / XGB_FILE))
    except xgb.core.XGBoostError as exc:
        raise ArtifactError(f"{path / XGB_FILE}: unreadable XGBoost model: {exc}") from exc
    if booster.num_features() != len(FEATURE_NAMES):
        raise ArtifactError(f"{path / XGB_FILE}: {booster.num_features()} features, expected {len(FEATURE_NAMES)}")
    net = _load_net(path / DEEP_FILE, manifest.get("deep_arch")) if deep else None
    mlp = _load_net(path / MLP_FILE, manifest.get("mlp_arch")) if deep and (path / MLP_FILE).exists() else None
    return ModelBundle(
        version=str(manifest["version"]),
        path=path,
        booster=booster,
        deep=net,
        mlp_only=mlp,
        thresholds=Thresholds.from_dict(manifest.get("thresholds", {})),
        manifest=manifest,
        forest=Forest.build(booster, len(FEATURE_NAMES)),
    )


def list_versions(root: Path) -> list[dict[str, Any]]:
    """Manifests of every version under `root`, oldest first."""
    found = []
    for d in sorted(root.glob("*/")) if root.exists() else []:
        m = d / MANIFEST
        if m.exists():
            try:
                found.append(json.loads(m.read_text()))
            except json.JSONDecodeError:
                found.append({"version": d.name, "created": "", "error": "unreadable manifest"})
    return sorted(found, key=lambda m: (str(m.get("created", "")), str(m.get("version"))))


def check_version(version: str) -> str:
    """`version` when it is a valid version name; ArtifactError naming it otherwise."""
    if not VERSION_PATTERN.fullmatch(version) or version == "latest":
        shown = version if len(version) <= 80 else version[:80] + "..."
        raise ArtifactError(f"model version {shown!r} is not a version name (letters, digits, '.', '_', '-'; no path separators)")
    return version


def version_path(root: Path, version: str) -> Path:
    """The folder of a named version under `root` (the name validated: never a path outside it)."""
    return root / check_version(version)


def resolve(root: Path, version: str) -> Path:
    """The folder of `version`; 'latest' is the promoted one, else the newest."""
    if version == "latest":
        pointer = root / CURRENT
        if pointer.exists():
            try:
                version = pointer.read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ArtifactError(f"{pointer}: unreadable ({exc})") from exc
        else:
            versions = [m for m in list_versions(root) if "error" not in m]
            if not versions:
                raise ArtifactError(f"no model versions under {root}: run `fraudstream train` first")
            version = str(versions[-1]["version"])
    path = version_path(root, version)
    if not (path / MANIFEST).exists():
        raise ArtifactError(f"model version {version!r} not found under {root}")
    return path


def promote(root: Path, version: str) -> None:
    """Make `version` the one services load as 'latest' (atomically)."""
    load_bundle(version_path(root, version))  # refuse to promote what cannot load
    tmp = root / f".{CURRENT}.tmp"
    tmp.write_text(version)
    tmp.replace(root / CURRENT)
