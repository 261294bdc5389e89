"""The repository stands on its own: no document, docstring or page points at a design document or a folder that
is not in it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MISSING = ("DESIGN" + ".md", "../" + "shared")
SUFFIXES = {".py", ".md", ".html", ".txt", ".toml", ".cfg", ".yml", ".yaml", ".sh"}
SKIP = {".git", ".venv", "node_modules", "var", "__pycache__", ".venv-humanaesexpert"}


def _files():
    for path in ROOT.rglob("*"):
        if path.is_file() and path.suffix in SUFFIXES and not SKIP & set(path.relative_to(ROOT).parts):
            yield path


def test_no_pointer_to_a_document_outside_the_repository():
    found = [f"{p.relative_to(ROOT)}: {needle}" for p in _files() for needle in MISSING
             if needle in p.read_text(errors="replace")]
    assert found == []


def test_every_docs_link_of_the_readme_exists():
    import re

    readme = (ROOT / "README.md").read_text()
    links = [m for m in re.findall(r"\]\(([^)#\s]+)", readme) if not m.startswith(("http://", "https://", "mailto:"))]
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []
