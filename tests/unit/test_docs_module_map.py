"""docs/architecture.md's module map names every control-plane module, so a new or renamed module updates it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"


def _unnamed(doc: str) -> list[str]:
    missing = []
    for path in sorted((REPO / "azure_dl").rglob("*.py")):
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(REPO / "azure_dl")
        if relative.parts[0] == "cli" and not path.stem.startswith("_") and path.stem != "main":
            named = f"`{path.stem}`" in doc  # the verbs are listed by name in one row
        else:
            named = f"`{path.name}`" in doc or f"`{relative.as_posix()}`" in doc
        if not named:
            missing.append(relative.as_posix())
    return missing


def test_every_control_plane_module_is_in_the_module_map() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert _unnamed(doc) == [], "add these modules to the module map in docs/architecture.md"
    assert _unnamed("") != []  # the walk finds modules, so the check can fail
