"""The control plane answers `--help` without importing the heavy libraries (torch, mlflow, ORT, Azure SDK)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from azure_dl.cli.main import build_parser

HEAVY = ("torch", "mlflow", "onnxruntime", "azure.ai.ml", "azure.identity")


def _modules_imported_by(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def _verbs() -> list[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "verb")
    return sorted(subparsers.choices)  # type: ignore[arg-type]


def test_top_level_help_imports_nothing_heavy() -> None:
    code = "from azure_dl.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    imported = _modules_imported_by(code)
    assert not {name for name in HEAVY if name in imported}


@pytest.mark.parametrize("verb", _verbs() or ["--version"])
def test_subcommand_help_imports_no_torch_or_azure_sdk(verb: str) -> None:
    code = f"from azure_dl.cli.main import main\ntry:\n    main([{verb!r}, '--help'])\nexcept SystemExit:\n    pass"
    imported = _modules_imported_by(code)
    assert not {name for name in ("torch", "azure.ai.ml", "azure.identity") if name in imported}
