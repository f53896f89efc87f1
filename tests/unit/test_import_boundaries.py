"""Import boundaries: the control plane answers `--help` without heavy libraries, and what must run without torch
(the evaluate step, the scoring scripts, every data-plane module the control plane imports) imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from azure_dl.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mlflow", "onnxruntime", "azure.ai.ml", "azure.identity")
DATA_PLANE = "training_scripts"
PACKAGES = ("azure_dl", DATA_PLANE)
# Run where the inference environment (no torch) runs them, or documented as torch-free in docs/architecture.md.
TORCH_FREE_ENTRY_POINTS = (
    "training_scripts.evaluate",
    "training_scripts.score_resnet",
    "training_scripts.score_lstm",
    "training_scripts.scoring",
    "training_scripts.synth",
    "training_scripts.metrics",
    "training_scripts.progress",
)


def _modules_imported_by(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def _verbs() -> list[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "verb")
    return sorted(subparsers.choices)  # type: ignore[arg-type]


def _package_imports(path: Path) -> set[str]:
    """The azure_dl / training_scripts modules a file imports anywhere: at module level and inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from training_scripts import synth`
    return {name for name in found if name.split(".")[0] in PACKAGES and _module_file(name).is_file()}


def _data_plane_imports(path: Path) -> set[str]:
    return {name for name in _package_imports(path) if name.startswith(f"{DATA_PLANE}.")}


def _module_file(module: str) -> Path:
    return REPO.joinpath(*module.split(".")).with_suffix(".py")


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _control_plane_imports() -> set[str]:
    return {name for path in sorted((REPO / "azure_dl").rglob("*.py")) for name in _data_plane_imports(path)}


def _closure(roots: set[str]) -> set[str]:
    """`roots` and every data-plane module they import, directly or through one another, eagerly or lazily."""
    seen: set[str] = set()
    todo = sorted(roots)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_data_plane_imports(_module_file(module)) - seen)
    return seen


TORCH_FREE = sorted(_closure(set(TORCH_FREE_ENTRY_POINTS) | _control_plane_imports()))


def _imports_torch(module: str) -> bool:
    probe = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return result.stdout.strip() == "True"


def test_top_level_help_imports_nothing_heavy() -> None:
    code = "from azure_dl.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    imported = _modules_imported_by(code)
    assert not {name for name in HEAVY if name in imported}


@pytest.mark.parametrize("verb", _verbs() or ["--version"])
def test_subcommand_help_imports_no_torch_or_azure_sdk(verb: str) -> None:
    code = f"from azure_dl.cli.main import main\ntry:\n    main([{verb!r}, '--help'])\nexcept SystemExit:\n    pass"
    imported = _modules_imported_by(code)
    assert not {name for name in ("torch", "azure.ai.ml", "azure.identity") if name in imported}


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_no_torch(module: str) -> None:
    assert not _imports_torch(module), f"importing {module} imports torch; the inference environment has none"


def test_the_torch_free_set_covers_the_readers_and_the_probe_can_fail() -> None:
    # The evaluate step reads test data lazily, inside functions: the walk must have found those imports.
    expected = {"training_scripts.image_folder", "training_scripts.text_table", "training_scripts.preprocess_config"}
    assert expected <= set(TORCH_FREE)
    assert "training_scripts.text_table" in _control_plane_imports()  # `azure-dl demo` reads held-out texts
    assert _imports_torch("training_scripts.text_data")  # a torch module is reported as one


def test_no_two_modules_import_each_other() -> None:
    imports = {
        _module_name(path): _package_imports(path) for package in PACKAGES for path in (REPO / package).rglob("*.py")
    }
    assert len(imports) > 50 and imports["training_scripts.dicom"]  # the walk found the modules and their imports
    mutual = sorted(
        f"{a} <-> {b}" for a, imported in imports.items() for b in imported if a < b and a in imports.get(b, ())
    )
    assert not mutual, f"modules that import each other (move what both need into a leaf module): {mutual}"


def test_the_model_folder_module_is_a_standard_library_leaf() -> None:
    # Everything that writes or reads a training output folder imports it, the control plane included.
    assert _package_imports(REPO / "training_scripts" / "model_folder.py") == set()
    assert "training_scripts.model_folder" in _control_plane_imports()


def test_the_azure_backend_does_not_reach_into_the_local_one() -> None:
    # What both registries share lives in azure_dl.model_registration, not in backends/local.
    for path in sorted((REPO / "azure_dl" / "backends" / "azureml").rglob("*.py")):
        local = sorted(name for name in _package_imports(path) if name.startswith("azure_dl.backends.local"))
        assert not local, f"{path.relative_to(REPO)} imports {local}"


CLI = "azure_dl.cli"
# `python -m azure_dl` is the CLI's entry point; nothing else outside cli/ may need it.
CLI_ENTRY_POINTS = {"azure_dl.__main__"}
# A verb module may import the shared helpers (cli/_*.py) and nothing else of cli/. The one exception: the demo
# runs its stages through `cli.main.main`, because each stage is exactly the command a user would type.
VERB_IMPORTS_ALLOWED = {"azure_dl.cli.demo": {"azure_dl.cli.main"}}


def _cli_imports(path: Path) -> set[str]:
    return {name for name in _package_imports(path) if name.startswith(f"{CLI}.")}


def test_library_code_does_not_import_the_cli() -> None:
    offenders = {
        _module_name(path): sorted(_cli_imports(path))
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if not _module_name(path).startswith(f"{CLI}.") and _module_name(path) not in CLI_ENTRY_POINTS
    }
    offenders = {module: names for module, names in offenders.items() if names}
    assert not offenders, f"library modules importing cli/ (move what they need out of cli/): {offenders}"
    assert _cli_imports(REPO / "azure_dl" / "__main__.py") == {"azure_dl.cli.main"}  # the walk sees cli imports


def test_verb_modules_import_only_the_shared_cli_helpers() -> None:
    cli_dir = REPO / "azure_dl" / "cli"
    offenders: dict[str, list[str]] = {}
    for path in sorted(cli_dir.glob("*.py")):
        module = _module_name(path)
        if path.stem == "main" or path.stem.startswith("_"):
            continue  # main imports every verb (by name, at run time); helpers are imported, not importers
        allowed = VERB_IMPORTS_ALLOWED.get(module, set())
        other = sorted(
            name for name in _cli_imports(path) if not name.split(".")[2].startswith("_") and name not in allowed
        )
        if other:
            offenders[module] = other
    assert not offenders, f"verb modules importing other verbs (move the shared code to a library module): {offenders}"
    assert "azure_dl.cli._job_args" in _cli_imports(cli_dir / "sweep.py")  # the walk sees cli-to-cli imports


def _private_uses(source: str) -> list[str]:
    """`module._name` on an imported azure_dl / training_scripts module, or `from ... import _name` of one."""
    tree = ast.parse(source)
    modules: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in PACKAGES)
    for node in ast.walk(tree):
        private = isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        if private and isinstance(node.value, ast.Name) and node.value.id in modules:
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_calls_a_private_helper_of_another() -> None:
    # What two modules share is public in one of them (e.g. backends/azureml/preflight.py for jobs and pipelines).
    planted = "from azure_dl.backends.azureml import jobs\njobs._ensure_cluster_for(client)\n"
    assert _private_uses(planted) == ["jobs._ensure_cluster_for"]  # the probe can fail
    offenders = {
        _module_name(path): uses
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if (uses := _private_uses(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"private helpers used across modules (make them public where they belong): {offenders}"


def test_the_workspace_service_imports_neither_the_azure_sdk_nor_azure_identity() -> None:
    # It is the other side of the wire: answering the SDK with the SDK's own models would hide shape errors.
    service_modules = sorted(
        _module_name(path) for path in (REPO / "azure_dl" / "workspace_service").glob("*.py") if path.stem != "__init__"
    )
    assert "azure_dl.workspace_service.service" in service_modules  # the probe sees the package
    loaded = _modules_imported_by("\n".join(f"import {name}" for name in service_modules))
    forbidden = sorted(name for name in loaded if name.startswith(("azure.ai.ml", "azure.identity")))
    assert not forbidden, f"the workspace service imports the Azure SDK: {forbidden}"
    assert "azure_dl.workspace_service.service" in loaded
