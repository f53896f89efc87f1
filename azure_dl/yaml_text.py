"""The one way azure-dl writes YAML documents (job, sweep, pipeline, endpoint): keys in the order rendered, block
style, no line wrapping (a long command stays one line, as `az ml` and load_job read it), Unicode kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def dump_yaml(document: Mapping[str, Any]) -> str:
    import yaml  # imported where used, keeping `--help` light

    return yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False, width=100_000, allow_unicode=True)
