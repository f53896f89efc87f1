"""Rendering a pipeline: a component's command as a node runs it (optional `$[[...]]` blocks resolved), and the
self-contained DIR/pipeline.yml (components inlined, `code` = the staged snapshot, environments copied)."""

from __future__ import annotations

import copy
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure_dl.errors import SpecError
from azure_dl.pipeline_spec import (
    COMMAND_REF,
    DATA_TYPES,
    OPTIONAL_BLOCK,
    PIPELINES_DIR,
    Component,
    PipelineSpec,
    is_uri,
)
from azure_dl.yaml_text import dump_yaml


def render_command(component: Component, inputs: Mapping[str, Any], outputs: Mapping[str, str]) -> str:
    """The component's command with ${{inputs.x}}/${{outputs.y}} replaced, as Azure ML does on a node.

    A `$[[...]]` block is kept only when every input it mentions has a value (Azure ML's optional arguments).
    """

    def has_value(name: str) -> bool:
        value = inputs.get(name, component.inputs[name].default)
        return value is not None and value != ""

    def optional_block(match: re.Match[str]) -> str:
        names = [name for kind, name in COMMAND_REF.findall(match.group(1)) if kind == "inputs"]
        return match.group(1) if all(has_value(name) for name in names) else ""

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if kind == "outputs":
            return shlex.quote(str(outputs[name]))
        value = inputs.get(name, component.inputs[name].default)
        if value is None:
            raise SpecError(f"component {component.name!r}: input {name!r} has no value")
        return shlex.quote(_format_literal(value))

    text = OPTIONAL_BLOCK.sub(optional_block, component.command)
    return " ".join(COMMAND_REF.sub(substitute, text).split())


def _format_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def command_argv(command: str, python: str) -> list[str]:
    """Split a rendered command; a leading `python` becomes the given interpreter (the local virtual env)."""
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = python
    return argv


# ------------------------------------------------------------------------------------------------------ rendering
RENDER_HEADER = (
    "# Rendered by azure-dl from {source}: components inlined, code = the staged snapshot. Submit it with\n"
    "# `azure-dl pipeline {name}` (or `az ml job create --file {file}`).\n"
)


def _relative(path: Path, base: Path) -> str:
    """`path` relative to the YAML's folder when inside it (portable), else absolute."""
    path, base = path.resolve(), base.resolve()
    if path == base or base in path.parents:
        return Path(os.path.relpath(path, base)).as_posix()
    return path.as_posix()


def _inline_component(component: Component, out_dir: Path, code_dir: Path, envs: dict[str, Any]) -> dict[str, Any]:
    from azure_dl.environments import environment_spec

    inline = copy.deepcopy(component.raw)
    inline.pop("$schema", None)
    inline["code"] = _relative(code_dir, out_dir)
    environment = inline.get("environment")
    if isinstance(environment, dict) and environment.get("conda_file"):
        # Components name an environments/<name>/conda.yml; the image comes from that folder's environment.yml.
        name = Path(str(environment["conda_file"])).parent.name
        if name not in envs:
            envs[name] = environment_spec(name, copy_to=out_dir / "environments")
        env = envs[name]
        inline["environment"] = {"image": env.image, "conda_file": _relative(Path(env.conda_file), out_dir)}
    return inline


def pipeline_document(spec: PipelineSpec, out_dir: Path, *, code_dir: Path) -> dict[str, Any]:
    """The pipeline job as plain data, self-contained relative to `out_dir` (environments copied there)."""
    document = copy.deepcopy(spec.raw)
    inputs: dict[str, Any] = {}
    for item in spec.inputs.values():
        if item.type not in DATA_TYPES:
            inputs[item.name] = item.value
            continue
        entry: dict[str, Any] = {"type": item.type}
        if item.value is not None:
            text = str(item.value)
            entry["path"] = text if is_uri(text) else _relative(Path(text).expanduser(), out_dir)
        inputs[item.name] = entry
    document["inputs"] = inputs
    environments: dict[str, Any] = {}
    jobs: dict[str, Any] = {}
    for step in spec.steps.values():
        node = copy.deepcopy(step.raw)
        node["component"] = _inline_component(step.component, out_dir, code_dir, environments)
        for port, binding in step.inputs.items():
            if binding.kind == "literal":
                node.setdefault("inputs", {})[port] = binding.value
            elif binding.kind == "parent":  # a file input bound by --input (the YAML's own bindings are kept)
                node.setdefault("inputs", {}).setdefault(port, f"${{{{parent.inputs.{binding.value}}}}}")
        jobs[step.name] = node
    document["jobs"] = jobs
    return document


def write_pipeline_yaml(spec: PipelineSpec, out_dir: Path, *, code_dir: Path, name: str = "pipeline.yml") -> Path:
    """Render DIR/pipeline.yml (what the dry-run shows and the Azure adaptor submits)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = pipeline_document(spec, out_dir, code_dir=code_dir)
    body = dump_yaml(document)
    source = spec.path.relative_to(PIPELINES_DIR.parent) if PIPELINES_DIR.parent in spec.path.parents else spec.path
    path = out_dir / name
    path.write_text(RENDER_HEADER.format(source=source, name=spec.name, file=name) + body, encoding="utf-8")
    return path
