"""The layering rules of docs/contributing.md ("How the code is laid out"), checked on the source:
no import cycle inside segrun/ (imports inside functions count), and the spec layer knows neither
torch nor the registries above it."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segrun"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """segrun module -> the segrun modules it imports anywhere in its body. `from a import b` points
    at the module a.b when there is one, else at a."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                            for alias in node.names}
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_segrun():
    graph = import_graph()
    assert "segrun.build" in graph and "segrun.spec.loader" in graph["segrun.spec"]
    assert cycles(graph) == []


def test_the_spec_layer_imports_nothing_above_it():
    graph = import_graph()
    spec_modules = [name for name in graph if name == "segrun.spec" or name.startswith("segrun.spec.")]
    allowed = set(spec_modules) | {"segrun", "segrun.errors"}
    for name in spec_modules:
        assert graph[name] <= allowed, f"{name} imports {sorted(graph[name] - allowed)}"
    code = ("import sys, segrun.spec; heavy = [m for m in ('torch', 'pytorch_lightning', 'albumentations', "
            "'segrun.models', 'segrun.losses', 'segrun.data') if m in sys.modules]; print(heavy)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
