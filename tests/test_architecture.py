"""The dependency rules of the architecture (DESIGN.md), checked on the imports of every module.

Each part of the code may import only some of the others: a stage service the runtime, the stubs and itself; the
orchestrator the runtime and the stubs; the runtime package none of the rest; training the networks but never a
servicer; networks, pipelines and geometry no grpc, FastAPI or boto3. Imports are read from the source (ast),
those inside functions included: a lazy import is a dependency all the same. For the rules on third-party
modules, what a module imports at its top level is followed through the project, since importing it runs those.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vton", "vton_cli", "services", "orchestrator", "training")
# A stage's servicer and its entry point: the only modules of a service that speak gRPC.
SERVICER = re.compile(r"^services\.\w+\.(service|__main__)$")
NOT_PLAIN = ("grpc", "fastapi", "boto3")  # what networks, pipelines and geometry never import


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted: a module, or a name inside one (`from a.b import c` is a.b.c)
    line: int = 0
    deferred: bool = False  # inside a function: it runs when the function is called, not on import


# ---------------------------------------------------------------------------------------------- reading


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(source: str, module: str, is_package: bool) -> list[Import]:
    """Every import of one module, relative ones resolved; dynamic imports come back as `<dynamic>`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, deferred: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(module, alias.name, node.lineno, deferred) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = base if alias.name == "*" else f"{base}.{alias.name}"
                found.append(Import(module, target, node.lineno, deferred))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            found.append(Import(module, "<dynamic>", node.lineno, deferred))
        inside_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, deferred or inside_function)

    visit(ast.parse(source), False)
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "__import__"
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def project_imports(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, list[Import]]:
    """module -> its imports, for every module of the packages under `root`."""
    graph: dict[str, list[Import]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            graph[module] = read_imports(path.read_text(), module, path.name == "__init__.py")
    return graph


# ---------------------------------------------------------------------------------------------- rules


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _internal(name: str) -> bool:
    return within(name, *PACKAGES)


def _is_servicer(name: str) -> bool:
    """`name` is a servicer module or something inside one (`services.pose.service.build_server`)."""
    return SERVICER.match(".".join(name.split(".")[:3])) is not None


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 else None


def package_rule(module: str, target: str) -> str | None:
    """Why `module` may not import the project module `target`, or None where it may."""
    stage = _stage(module)
    if stage is not None:
        if not within(target, "vton.runtime", "vton.v1", f"services.{stage}"):
            return "a stage service imports only vton.runtime, vton.v1 and its own package"
    elif within(module, "services"):
        return "the services namespace package imports nothing"
    elif within(module, "orchestrator"):
        if not within(target, "vton.runtime", "vton.v1", "orchestrator"):
            return "the orchestrator reaches the stages through the stubs alone: vton.runtime, vton.v1 and itself"
    elif within(module, "vton"):
        if not within(target, "vton"):
            return "vton (what every image holds) imports no service, orchestrator, vton_cli or training"
    elif within(module, "training"):
        # `--server URL` builds and evaluations talk to a running platform through the typed HTTP client alone.
        cli = within(target, "vton_cli") and not within(target, "vton_cli.client")
        if _is_servicer(target) or within(target, "orchestrator") or cli:
            return "training imports networks, backends and the runtime, never a servicer, the orchestrator or the CLI"
    elif within(module, "vton_cli") and (_is_servicer(target) or within(target, "orchestrator")):
        return "the CLI starts services and the orchestrator as processes and talks to them; it never imports them"
    return None


def forbidden_third_party(module: str) -> tuple[tuple[str, ...], str] | None:
    """The third-party modules `module` may not reach, and why; None where it may reach any."""
    if _stage(module) is not None and not SERVICER.match(module):
        return (
            NOT_PLAIN,
            "networks, pipelines and geometry are plain Python and torch (only the servicer speaks gRPC)",
        )
    if within(module, "training"):
        return ("grpc",), "training calls the networks directly, never over gRPC"
    return None


def _resolve(target: str, graph: Mapping[str, list[Import]]) -> list[str]:
    """The project modules importing `target` runs: each package on the way down, then the module itself."""
    parts = target.split(".")
    return [".".join(parts[:depth]) for depth in range(1, len(parts) + 1) if ".".join(parts[:depth]) in graph]


def reached(module: str, graph: Mapping[str, list[Import]]) -> dict[str, list[str]]:
    """Third-party top-level modules that `module` and what it imports load: name -> the chain that loads it.

    The module's own imports count wherever they stand; of the project modules it reaches, only the imports
    at their top level (those run on import: a function's lazy import runs only if that function is called)."""
    chains: dict[str, list[str]] = {}
    queue: list[tuple[Import, list[str]]] = [(i, [module]) for i in graph.get(module, [])]
    seen = {module}
    while queue:
        imp, chain = queue.pop(0)
        if imp.target == "<dynamic>":
            continue
        if not _internal(imp.target):
            chains.setdefault(imp.target.split(".")[0], [*chain, imp.target])
            continue
        for inner in _resolve(imp.target, graph):
            if inner not in seen:
                seen.add(inner)
                queue += [(i, [*chain, inner]) for i in graph[inner] if not i.deferred]
    return chains


def violations(graph: Mapping[str, list[Import]]) -> list[str]:
    """Every import that breaks a rule, as `module:line imports target: the rule`."""
    found: list[str] = []
    for module, imports in sorted(graph.items()):
        for imp in imports:
            if imp.target == "<dynamic>":
                found.append(f"{module}:{imp.line} imports dynamically: a dependency these rules cannot see")
            elif _internal(imp.target) and (why := package_rule(module, imp.target)):
                found.append(f"{module}:{imp.line} imports {imp.target}: {why}")
        rule = forbidden_third_party(module)
        if rule is not None:
            names, why = rule
            chains = reached(module, graph)
            found += [f"{' -> '.join(chains[n])}: {why}" for n in names if n in chains]
    return found


# ---------------------------------------------------------------------------------------------- the tree


def test_the_repository_holds_every_dependency_rule() -> None:
    graph = project_imports(ROOT)
    for package in PACKAGES:
        assert any(within(m, package) for m in graph), f"no module of {package} was read"
    found = violations(graph)
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------------------------- planted violations


def _one(module: str, target: str) -> dict[str, list[Import]]:
    return {module: [Import(module, target, 7)]}


# Imports that break a rule (module, target), by the words of the rule each must be reported with.
PLANTED = {
    "a stage service imports only": [
        ("services.pose.service", "services.warp.tps"),
        ("services.pose.backends.openpose", "orchestrator.jobs"),
        ("services.parsing.agnostic", "training.data.sample"),
        ("services.warp.service", "vton_cli.client"),
        ("services.diffusion.backends.ladi_vton", "vton.weights_cli"),
    ],
    "the orchestrator reaches the stages": [
        ("orchestrator.pipeline", "services.pose.types"),
        ("orchestrator.app", "vton_cli.client"),
        ("orchestrator.jobs", "training.data"),
    ],
    "vton (what every image holds)": [
        ("vton.runtime.server", "services.pose.service"),
        ("vton.runtime.weights", "vton_cli.s3server"),
        ("vton.weights_cli", "training.data.sample"),
        ("vton.runtime.messages", "orchestrator.schemas"),
    ],
    "never a servicer": [
        ("training.warp", "services.warp.service"),
        ("training.warp", "services.warp.__main__"),
        ("training.warp", "orchestrator.storage"),
        ("training.warp", "vton_cli.platform"),
    ],
    "the CLI starts services": [
        ("vton_cli.bench", "services.pose.service.build_server"),
        ("vton_cli.cli", "orchestrator.app"),
    ],
    "the services namespace package imports nothing": [("services", "services.pose")],
    "plain Python and torch": [
        ("services.pose.models.openpose_body", "grpc"),
        ("services.warp.tps", "fastapi.responses"),
        ("services.diffusion.pipelines.ladi_vton", "boto3"),
        ("services.parsing.backends.schp", "grpc"),
    ],
    "never over gRPC": [("training.unet", "grpc")],
    "a dependency these rules cannot see": [("vton.runtime.images", "<dynamic>")],
}


@pytest.mark.parametrize(
    ("module", "target", "rule"),
    [(module, target, rule) for rule, imports in PLANTED.items() for module, target in imports],
)
def test_a_planted_violation_is_reported(module: str, target: str, rule: str) -> None:
    (found,) = violations(_one(module, target))
    assert found.startswith(module) and rule in found, found
    assert target in found or target == "<dynamic>"


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("services.pose.service", "grpc"),
        ("services.pose.__main__", "vton.runtime.server.main"),
        ("services.pose.backends.openpose", "vton.runtime.weights"),
        ("services.warp.backends.ladi_vton", "services.warp.models.tps_regression"),
        ("orchestrator.stages", "vton.v1.pose_pb2_grpc"),
        ("orchestrator.storage", "boto3"),
        ("vton.runtime.server", "grpc"),
        ("training.warp", "services.warp.models.refinement_unet"),
        ("training.warp", "services.warp.backends.ladi_vton"),
        ("training.warp", "vton.runtime.weights"),
        ("training.data.annotate", "vton_cli.client"),
        ("vton_cli.bench", "services.pose.backends"),
        ("vton_cli.cli", "vton.weights_cli"),
    ],
)
def test_an_allowed_import_is_not_reported(module: str, target: str) -> None:
    assert violations(_one(module, target)) == []


def test_third_party_rules_follow_top_level_imports_through_the_project() -> None:
    """A network that imports a helper which imports grpc at its top level loads grpc: reported, with the
    chain. A helper's lazy import (inside a function) runs only when called: not reported."""
    graph = {
        "services.pose.models.net": [Import("services.pose.models.net", "services.pose.helpers.f", 3)],
        "services.pose.helpers": [Import("services.pose.helpers", "vton.runtime.store", 1)],
        "vton.runtime.store": [Import("vton.runtime.store", "boto3", 9, deferred=True)],
    }
    assert violations(graph) == []
    graph["vton.runtime.store"] = [Import("vton.runtime.store", "boto3", 9)]
    assert violations(graph) == [
        "services.pose.helpers -> vton.runtime.store -> boto3: networks, pipelines and geometry are plain "
        "Python and torch (only the servicer speaks gRPC)",
        "services.pose.models.net -> services.pose.helpers -> vton.runtime.store -> boto3: networks, "
        "pipelines and geometry are plain Python and torch (only the servicer speaks gRPC)",
    ]


def test_a_planted_violation_in_a_module_tree_is_found_with_its_line(tmp_path: Path) -> None:
    """Real files, read as the repository is: relative imports resolved, lazy and dynamic imports seen."""
    files = {
        "services/__init__.py": "",
        "services/pose/__init__.py": "",
        "services/pose/models/__init__.py": "",
        "services/pose/models/net.py": "import torch\n\n\ndef load():\n    from ...warp import tps\n",
        "services/pose/service.py": "import grpc\nimport importlib\nimportlib.import_module('services.warp')\n",
        "services/warp/__init__.py": "",
        "services/warp/tps.py": "from vton.runtime import images\n",
        "vton/__init__.py": "",
        "vton/runtime/__init__.py": "",
        "vton/runtime/images.py": "import numpy\n",
        "training/__init__.py": "",
        "training/pose.py": "from services.pose.models.net import load\nfrom services.pose import service\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(project_imports(tmp_path, ("vton", "services", "training")))
    assert found == [
        "services.pose.models.net:5 imports services.warp.tps: a stage service imports only vton.runtime, "
        "vton.v1 and its own package",
        "services.pose.service:3 imports dynamically: a dependency these rules cannot see",
        "training.pose:2 imports services.pose.service: training imports networks, backends and the runtime, "
        "never a servicer, the orchestrator or the CLI",
        "training.pose -> services.pose.service -> grpc: training calls the networks directly, never over gRPC",
    ]
