"""docs/configuration.md, generated from the fields: `python -m stream.config.reference [--check]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from stream.config.kafka import GUARDED
from stream.config.loading import ENV_ALIASES, INFRA_VARIABLES
from stream.config.sections import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} entries"
    text = "none" if value is None else str(value)
    return f"`{text}`" if text else "`''`"


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) for every field, sections expanded in place."""
    out = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = info.annotation
        out.append((key, _default(info), info.description or ""))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(rows(annotation, key + "."))
    return out


def render() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from `stream/config/` by `python -m stream.config.reference`; do not edit by hand.",
        "",
        "Precedence: defaults < YAML file (`--config FILE` or `FRAUDSTREAM_CONFIG`) < environment.",
        "A key `a.b.c` is the variable `FRAUDSTREAM_A__B__C`; lists and mappings are given as YAML flow",
        "values (`FRAUDSTREAM_KAFKA__TOPICS='{transactions: t1}'`). An unknown key or variable fails at start,",
        "naming it; secrets are never echoed.",
        "",
        "Aliases: " + ", ".join(f"`{k}` = `{'.'.join(v)}`" for k, v in sorted(ENV_ALIASES.items())) + ".",
        "Other `FRAUDSTREAM_*` variables read by the local infrastructure only: "
        + ", ".join(f"`{v}`" for v in sorted(INFRA_VARIABLES))
        + ".",
        "",
        "librdkafka keys that `kafka.client`, `kafka.producer` and `kafka.consumer` may not override (the",
        "guarantees rest on them): " + ", ".join(f"`{k}`" for k in sorted(GUARDED)) + ".",
        "",
        "| key | default | description |",
        "|---|---|---|",
    ]
    for key, default, description in rows(Settings):
        lines.append(f"| `{key}` | {default} | {description.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run python -m stream.config.reference", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
