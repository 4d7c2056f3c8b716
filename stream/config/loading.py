"""Reading Settings: defaults < file (``--config`` or ``FRAUDSTREAM_CONFIG``) < environment.

Environment keys are ``FRAUDSTREAM_<SECTION>__<KEY>`` (e.g. ``FRAUDSTREAM_SCORER__BATCH__MAX_ROWS``),
top-level keys ``FRAUDSTREAM_<KEY>`` (``FRAUDSTREAM_LOG_FORMAT``, ``FRAUDSTREAM_ARMS``), plus
two short aliases: ``FRAUDSTREAM_KAFKA_BOOTSTRAP`` and ``FRAUDSTREAM_REDIS_URL``. The local
infrastructure's own variables (INFRA_VARIABLES) are the only other ``FRAUDSTREAM_*`` names
allowed. An unknown or mistyped key, in the file or the environment, fails at load with a
ConfigError naming it; a secret's value is never echoed. The entry point reads the environment once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from stream.config.sections import Settings
from stream.errors import ConfigError

ENV_PREFIX = "FRAUDSTREAM_"
ENV_ALIASES = {
    "FRAUDSTREAM_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "FRAUDSTREAM_REDIS_URL": ("redis", "url"),
}
# Read by deploy/local/infra.sh (and the test fixtures that start it), not by the services.
INFRA_VARIABLES = frozenset(
    {
        "FRAUDSTREAM_CONFIG",
        "FRAUDSTREAM_RUN_DIR",
        "FRAUDSTREAM_KAFKA_PORT",
        "FRAUDSTREAM_KAFKA_PORTS",
        "FRAUDSTREAM_KAFKA_CONTROLLER_PORTS",
        "FRAUDSTREAM_KAFKA_NODES",
        "FRAUDSTREAM_KAFKA_CONTROLLER_PORT",
        "FRAUDSTREAM_KAFKA_LIB",
        "FRAUDSTREAM_KAFKA_GC",
        "FRAUDSTREAM_REDIS_PORT",
        "FRAUDSTREAM_REDIS_PORTS",
        "FRAUDSTREAM_REDIS_BUS_PORTS",
        "FRAUDSTREAM_REDIS_CLUSTER",
        "FRAUDSTREAM_SECURE",
        "FRAUDSTREAM_KAFKA_SASL_PORT",
    }
)
SECRET_WORDS = ("password", "secret", "token", "key")


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an optional YAML file and an environment mapping."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    file = path or (Path(env["FRAUDSTREAM_CONFIG"]) if env.get("FRAUDSTREAM_CONFIG") else None)
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config file {file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: top level must be a mapping")
        data = loaded
    for key, value in sorted(env.items()):
        if not key.startswith(ENV_PREFIX) or key in INFRA_VARIABLES:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if key in ENV_ALIASES:
            _set(data, ENV_ALIASES[key], value)
        elif "__" in key:
            _set(data, tuple(name.split("__")), _env_value(value))
        elif name in Settings.model_fields:
            data[name] = _env_value(value)
        else:
            raise ConfigError(f"unknown environment variable {key}: not a setting (sections are joined with '__')")
    try:
        return Settings.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(_explain(exc)) from exc


def _env_value(value: str) -> Any:
    # Lists and mappings in the environment are written as YAML/JSON flow values.
    if value[:1] in "[{":
        return yaml.safe_load(value)
    return value


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _explain(exc: PydanticValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
        elif any(word in key.lower() for word in SECRET_WORDS) or key.endswith("url"):
            lines.append(f"config key '{key}': {err['msg']} (value not shown: a secret or a URL that may carry one)")
        elif isinstance(err.get("input"), dict | list):
            # A section's own check (say, SASL without a password): its input holds every key, secrets too.
            lines.append(f"config section '{key}': {err['msg']}")
        else:
            lines.append(f"config key '{key}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)
