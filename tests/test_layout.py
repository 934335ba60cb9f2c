"""The layout shows the design: layers import one way, no cycles, small modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import fast_mcp_gateway

PACKAGE = Path(fast_mcp_gateway.__file__).parent
MAX_LINES = 500

# Lower layers never import higher ones.  Within a rank, packages do not import each
# other (front and admin are siblings), except where LEAVES says so.
RANKS: dict[str, int] = {
    "_version": 0, "errors": 0,
    "config": 1, "policies": 1, "principal": 1, "store": 1, "telemetry": 1, "_compat": 1,
    "_compat_sessions": 1,  # _compat's SDK session internals (the session lane's)
    "_compat_server": 1,  # _compat's server side (re-exported by _compat)
    "spawn": 1,  # how a stdio server's process starts: for _compat and upstream alike
    "upstream": 2,
    "routing": 3, "alerts": 3,
    "front": 4, "admin": 4,
    "http": 5,
    "ui": 6,  # the dashboard: over http's access policy and route groups
    "gateway": 7,
    "cli": 8, "__init__": 8,
    "__main__": 9,
    "demo": 10,
}
# Leaves of rank 1 that other rank-1 packages may use (identity, records, redaction,
# process starts).
LEAVES = {"config", "store", "telemetry", "principal", "_compat", "_compat_sessions",
          "_compat_server", "policies", "spawn"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        yield ".".join(("fast_mcp_gateway", *parts)), path


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """Every gateway module ``path`` imports, TYPE_CHECKING blocks included
    (``from pkg import submodule`` counts as the submodule, not the package)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.startswith("fast_mcp_gateway"):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fast_mcp_gateway"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = dict(_modules())
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {t for t in _imports(path, name, set(modules))
                       if t in modules and t != name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_is_longer_than_the_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for _, p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_top_level_module_and_folder_has_a_layer() -> None:
    tops = {_top(m) for m, _ in _modules()}
    assert tops <= set(RANKS), f"give these a rank in RANKS: {tops - set(RANKS)}"


def test_imports_go_one_way() -> None:
    wrong = []
    for module, targets in _graph().items():
        src = _top(module)
        for target in targets:
            dst = _top(target)
            if src == dst or dst in ("_version", "errors"):
                continue
            same_rank = RANKS[dst] == RANKS[src]
            if RANKS[dst] > RANKS[src] or (same_rank and dst not in LEAVES):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_not_even_for_type_checking() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "--version"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == f"mcp-gateway {fast_mcp_gateway.__version__}"
