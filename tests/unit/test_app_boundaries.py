"""The platform's dependency rule, read from the source (like tests/model/test_boundaries.py for model_core).

1. An app reaches another app only through that app's `selectors` (reads) and `services` (writes); accounts'
   `roles` and `permissions` are the shared vocabulary of who may do what. Never another app's models, api, tasks or
   helpers: e.g. the catalog stores imported labels through annotation.services.consensus_imported_add, the
   annotation page reads pre-scores through modeling.selectors, modeling re-orders tasks through
   annotation.services.task_priorities_reorder.
2. Tasks are queued by name (common.jobqueue): nothing imports a `tasks` module, and a `tasks` module imports only
   its own app (and common), so services and tasks never import each other.
3. `common` is below the apps: it imports none of them.

KNOWN_CROSSINGS lists the imports of another app's internals that predate the rule, with what each imports. It may
only shrink: a new crossing, a new name in a listed one, or a listed one that is gone (delete its entry) fails.
Imports under `if TYPE_CHECKING:` are annotations only and not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aesplatform

ROOT = Path(aesplatform.__file__).parent
APPS = ("accounts", "annotation", "catalog", "curation", "datasets", "modeling")
PUBLIC = {app: {"selectors", "services"} for app in APPS}
PUBLIC["accounts"] |= {"roles", "permissions"}

# (importing module, imported module) -> names imported. Reads of the catalog's images and of their status life
# cycle (imported -> filtered -> approved -> in campaign, broken) by the apps that move an image along it; the
# datasets app's reads of consensus rows; modeling's reads of frozen dataset versions (the training rows: issue 16,
# point 2); the demo scripts; the annotation hot path (hand-written SQL over the image table, measured).
KNOWN_CROSSINGS: dict[tuple[str, str], set[str]] = {
    ("accounts.management.commands.demo_setup", "catalog.models"): {"Image", "ImportJob", "ImportKind"},
    ("annotation.hotpath", "catalog.models"): {"Image"},
    ("annotation.services", "catalog.models"): {"Image", "ImageStatus"},
    ("curation.services", "catalog.models"): {"Image", "ImageStatus"},
    ("datasets.selection", "annotation.models"): {"Consensus", "ConsensusOrigin"},
    ("datasets.selection", "catalog.models"): {"ImageStatus"},
    ("modeling.demo", "annotation.models"): {"Assignment", "Consensus"},
    ("modeling.demo", "catalog.models"): {"Image"},
    ("modeling.services", "catalog.models"): {"Image", "ImageStatus"},
    ("modeling.services", "datasets.models"): {"DatasetItem", "DatasetState", "DatasetVersion", "Split"},
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "migrations" in parts:
            continue
        yield ".".join(p for p in parts if p != "__init__"), ast.parse(path.read_text(), filename=str(path))


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def _imports(module: str, tree: ast.Module):
    """(imported module under aesplatform, names) for every import of the module, at any depth (functions too)."""
    package = module.split(".")[:-1] if not (ROOT / Path(*module.split("."))).is_dir() else module.split(".")
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("aesplatform."):
                    yield alias.name.removeprefix("aesplatform."), set()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("aesplatform"):
                target = node.module.removeprefix("aesplatform").lstrip(".")
            else:
                continue
            names = {alias.name for alias in node.names}
            if target.count(".") == 0:  # `from aesplatform.catalog import selectors`: each name is a module
                for name in names:
                    yield f"{target}.{name}" if target else name, set()
            else:
                yield target, names


def _crossings() -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for module, tree in _modules():
        owner = module.split(".")[0]
        for target, names in _imports(module, tree):
            app, _, rest = target.partition(".")
            if app not in APPS or app == owner:
                continue
            if owner not in APPS and owner != "common":
                continue  # the project's urls, settings and the Celery app wire the apps together
            submodule = rest.split(".")[0]
            if owner in APPS and submodule in PUBLIC[app]:
                continue
            found.setdefault((module, target), set()).update(names)
    return found


def test_apps_reach_each_other_only_through_selectors_and_services():
    crossings = _crossings()
    new = {key: sorted(names) for key, names in crossings.items() if key not in KNOWN_CROSSINGS}
    grown = {key: sorted(names - KNOWN_CROSSINGS[key]) for key, names in crossings.items()
             if key in KNOWN_CROSSINGS and names - KNOWN_CROSSINGS[key]}
    gone = sorted(key for key in KNOWN_CROSSINGS if key not in crossings)
    assert new == {}, "import the other app's selectors/services instead"
    assert grown == {}, "import the other app's selectors/services instead"
    assert gone == [], "this crossing is gone: delete it from KNOWN_CROSSINGS"


def test_the_three_cross_app_writes_go_through_services():
    crossings = _crossings()
    assert not [key for key in crossings if key[0].startswith("catalog.") and key[1] == "annotation.models"]
    assert not [key for key in crossings if key[0].startswith("annotation.") and key[1] == "modeling.models"]
    assert not [key for key in crossings if key[0].startswith("modeling.") and key[1] == "annotation.models"
                and key[0] != "modeling.demo"]


def test_tasks_are_queued_by_name_and_import_only_their_own_app():
    offenders = []
    for module, tree in _modules():
        owner = module.split(".")[0]
        for target, _ in _imports(module, tree):
            if target.endswith(".tasks") or target == "tasks":
                offenders.append(f"{module} imports {target}")
            if module.endswith(".tasks") and target.split(".")[0] not in (owner, "common"):
                offenders.append(f"{module} imports {target}")
    assert offenders == []


def test_common_imports_no_app():
    offenders = [f"{module} imports {target}" for module, tree in _modules() if module.startswith("common.")
                 for target, _ in _imports(module, tree) if target.split(".")[0] in APPS]
    assert offenders == []
