"""Dependencies point down: the domain (``image_service``) imports no entry point and nothing of
the local stack, and its modules import each other without a cycle — at module level, in a
function, or behind ``TYPE_CHECKING`` alike."""

from __future__ import annotations

import ast
from pathlib import Path

FUNCTIONS = Path(__file__).parents[2] / "functions"
DOMAIN = FUNCTIONS / "generation" / "image_service"
# Every Lambda's top-level modules (handlers and their helpers), read from the tree so that a new
# entry point is covered without editing this list; and the local stack.
ENTRY_POINTS = {path.stem for path in FUNCTIONS.glob("*/*.py")} | {"local"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(DOMAIN.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def domain_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in DOMAIN.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_the_entry_points_are_found_in_the_tree():
    assert {"generation", "job_tasks", "models_check", "health", "authorizer"} <= ENTRY_POINTS


def test_the_domain_imports_no_entry_point_and_nothing_of_the_local_stack():
    for path in DOMAIN.rglob("*.py"):
        roots = {name.split(".")[0] for name in imports_of(path)}
        assert not roots & ENTRY_POINTS, f"{path.name} imports {roots & ENTRY_POINTS}"


def test_the_domain_modules_import_each_other_without_a_cycle():
    graph = domain_graph()
    done, visiting = set(), []

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " → ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for dependency in graph[module]:
            visit(dependency)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_delivery_and_the_job_steps_do_not_reach_up_to_the_service():
    graph = domain_graph()
    for lower in ("image_service.delivery", "image_service.pipeline", "image_service.jobs",
                  "image_service.job_store", "image_service.job_records"):  # fmt: skip
        assert "image_service.service" not in graph[lower], lower
