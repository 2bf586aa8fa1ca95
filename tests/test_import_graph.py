"""The package's import graph, built from the SOURCE (every import statement, including the
ones inside functions, relative imports resolved), is acyclic and layered: no rclpy outside
``imagebind_ros/ros/``, ``model/`` imports torch and itself only, the library never imports
``training``, and nothing at runtime imports the exporter.

A module importing ``a.b`` also runs ``a/__init__.py``; that implicit edge is not drawn (it is
not an import statement of the module, and every import-cycle checker leaves it out), but
every explicit ``import``/``from ... import`` is, so a cycle hidden in a function-level
import fails here with the modules of the cycle named.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("imagebind_ros", "training")
# Top-level packages that are ROS (rclpy and the interfaces and tools around it).
ROS = {"rclpy", "rcl_interfaces", "rosidl_runtime_py", "rosidl_parser", "builtin_interfaces",
       "sensor_msgs", "std_msgs", "geometry_msgs", "diagnostic_msgs", "lifecycle_msgs",
       "launch", "launch_ros", "ament_index_python", "rclpy_message_converter"}
GENERATED = ("imagebind_ros.msg", "imagebind_ros.srv")  # colcon-built ROS interfaces


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of PACKAGES."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imported_names(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every absolute dotted name an import statement of ``path`` asks for, with its line;
    ``from X import y`` gives ``X.y`` (a submodule or an attribute: resolved later)."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, node.lineno
            for alias in node.names:
                yield f"{mod}.{alias.name}", node.lineno


def graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of PACKAGES: first line}."""
    files = module_files()
    out: dict[str, dict[str, int]] = {m: {} for m in files}
    for mod, path in files.items():
        for target, line in imported_names(mod, path):
            if target in files and target != mod:
                out[mod].setdefault(target, line)
    return out


def within(mod: str, package: str) -> bool:
    """``mod`` is ``package`` or one of its submodules (not a sibling sharing the prefix)."""
    return mod == package or mod.startswith(package + ".")


def external_imports(package: str) -> dict[str, set[str]]:
    """module of ``package`` -> top-level names of everything it imports."""
    files = module_files()
    return {mod: {t.split(".")[0] for t, _ in imported_names(mod, path)}
            for mod, path in files.items() if within(mod, package)}


def find_cycle(g: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(g, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(g):
        if colour[start]:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(g[start])))]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
            elif colour[nxt] == 1:
                path = [n for n, _ in stack]
                return path[path.index(nxt):] + [nxt]
            elif colour[nxt] == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(g[nxt]))))
    return None


def describe(cycle: list[str], g: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {g[a][b]})" for a, b in zip(cycle, cycle[1:])) + \
        f" -> {cycle[-1]}"


def test_the_cycle_finder_finds_and_names_a_cycle() -> None:
    g = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 9}, "d": {"a": 1}}
    cycle = find_cycle(g)
    assert cycle == ["a", "b", "c", "a"]
    assert describe(cycle, g) == "a (line 3) -> b (line 7) -> c (line 9) -> a"
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 2, "b": 3}}) is None


def test_relative_and_function_level_imports_are_seen(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("from . import sib\nfrom ..up import thing\ndef f():\n"
                   "    from .deep.er import x\n    import os.path\n")
    got = {n for n, _ in imported_names("pkg.sub.mod", src)}
    assert {"pkg.sub", "pkg.sub.sib", "pkg.up", "pkg.up.thing", "pkg.sub.deep.er",
            "pkg.sub.deep.er.x", "os.path"} <= got


def test_no_import_cycles() -> None:
    g = graph()
    assert len(g) > 40 and g["imagebind_ros.ros.encoder_node"]  # the graph was really built
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + describe(cycle, g)


def test_no_ros_outside_the_ros_package() -> None:
    bad = {}
    for mod, names in external_imports("imagebind_ros").items():
        if within(mod, "imagebind_ros.ros"):
            continue
        ros = names & ROS
        path = module_files()[mod]
        ros |= {t for t, _ in imported_names(mod, path) if t.startswith(GENERATED)}
        if ros:
            bad[mod] = sorted(ros)
    for mod, names in external_imports("training").items():
        if names & ROS:
            bad[mod] = sorted(names & ROS)
    assert not bad, f"ROS imported outside imagebind_ros/ros/: {bad}"


def test_model_imports_torch_and_itself_only() -> None:
    allowed = {"torch", "numpy", "__future__"} | set(sys.stdlib_module_names)
    files = module_files()
    for mod, path in files.items():
        if not within(mod, "imagebind_ros.model"):
            continue
        for target, line in imported_names(mod, path):
            top = target.split(".")[0]
            inside = within(target, "imagebind_ros.model")
            assert inside or (top in allowed and top != "imagebind_ros"), \
                f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_the_library_never_imports_training() -> None:
    bad = {m: sorted(n) for m, n in external_imports("imagebind_ros").items()
           if "training" in n}
    assert not bad, bad


@pytest.mark.parametrize("runtime", ["imagebind_ros.ros", "imagebind_ros.model_cache",
                                     "imagebind_ros.inference.factory"])
def test_nothing_at_runtime_reaches_the_exporter(runtime: str) -> None:
    """Nodes (``imagebind-ros run`` included), the model cache and the backends reach the
    exporter by no chain of imports; only the CLI's ``export`` subcommand imports it."""
    g = graph()
    starts = [m for m in g if within(m, runtime)]
    assert starts, runtime
    seen, todo = set(starts), list(starts)
    while todo:
        for nxt in g[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert "imagebind_ros.inference.export" not in seen
