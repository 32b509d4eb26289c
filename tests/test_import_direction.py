"""The one direction of imports (README, "Layout"), checked on the source: every ``import`` statement of the
project — at module level or inside a function — must point down the layers, and the module graph has no cycle.

Layers, bottom to top: ``envs`` (imports no project code) ← core (``robrep`` minus the packages named below) ←
``robrep.pretrain`` ← ``policies`` | ``planners`` (never each other) ← ``robrep.sweep`` (experiments) ←
``benchmarks`` ← the CLI (``robrep.cli``, ``robrep.commands``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("envs", "robrep", "policies", "planners", "benchmarks", "configs")

#: (module prefix, layer, group), most specific prefix first; a module may import a lower layer or its own group.
LAYERS = (
    ("robrep.cli", 6, "cli"), ("robrep.commands", 6, "cli"),
    ("benchmarks", 5, "benchmarks"),
    ("robrep.sweep", 4, "experiments"),
    ("policies", 3, "policies"), ("planners", 3, "planners"),
    ("robrep.pretrain", 2, "pretrain"),
    ("robrep", 1, "core"), ("configs", 1, "core"),
    ("envs", 0, "envs"),
)


def layer(module: str) -> tuple[int, str]:
    for prefix, level, group in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return level, group
    raise AssertionError(f"module {module} is in no layer")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def project_imports(mods: dict[str, Path]) -> list[tuple[str, str, int]]:
    """``(importer, imported module, line)`` for every import of project code (resolved to the longest module)."""
    edges = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] in PACKAGES:
                    edges.append((name, target, node.lineno))
                    break
    return sorted(set(edges))


def test_imports_point_down_the_layers():
    wrong = []
    for src, dst, line in project_imports(modules()):
        (ls, gs), (ld, gd) = layer(src), layer(dst)
        if ld > ls or (ld == ls and gs != gd):
            wrong.append(f"{src}:{line} imports {dst} ({gs} -> {gd})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_module_graph_has_no_cycle():
    graph: dict[str, set[str]] = {}
    for src, dst, _ in project_imports(modules()):
        graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_loading_an_encoder_imports_no_pretraining_and_no_other_family():
    """A family imports its heavy library only when used: loading MAE imports neither diffusers nor pretraining."""
    import subprocess
    import sys

    code = ("import sys; from robrep.encoders import load_encoder; load_encoder('mae', input_size=32, patch_size=8, "
            "embed_dim=32, depth=1, num_heads=2); bad = sorted(m for m in sys.modules if m.startswith(('diffusers', "
            "'robrep.pretrain', 'robrep.encoders.dift', 'robrep.encoders.clip', 'policies', 'planners', 'envs'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
