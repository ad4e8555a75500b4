"""The container images, checked without a Docker engine (none runs on CI machines).

hadolint lints every Dockerfile with the repository's .hadolint.yaml (any finding fails; a rule may only be
silenced inline). The rest reads the Dockerfiles as an image builder would and checks what the images promise:
multi-stage builds on the right bases, a non-root user, a health check, weights never baked in, only the service's
own code, and third-party packages that cover exactly what the service's code imports, each pinned in
requirements.txt. The training image (training/Dockerfile, what the Helm chart's training job runs) is checked the
same way against what `python -m training` imports. The package the images install is built as a wheel to check
it carries its data files.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import ROOT, run, tool
from vton.runtime.vocab import API_PORT, GRPC_PORTS, STAGES

DOCKERFILES = {stage: ROOT / "services" / stage / "Dockerfile" for stage in STAGES} | {
    "orchestrator": ROOT / "orchestrator" / "Dockerfile"
}
TRAINING_DOCKERFILE = ROOT / "training" / "Dockerfile"
ALL_DOCKERFILES = DOCKERFILES | {"training": TRAINING_DOCKERFILE}
INTERNAL = {"vton", "services", "orchestrator"}
# Import name -> the distribution (as named in requirements.txt) that provides it.
DISTRIBUTIONS = {
    "numpy": "numpy",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection",
    "google": "protobuf",
    "prometheus_client": "prometheus-client",
    "ai_edge_litert": "ai-edge-litert",
    "httpx": "httpx",
    "huggingface_hub": "huggingface-hub",
    "boto3": "boto3",
    "botocore": "boto3",
    "torch": "torch",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "safetensors": "safetensors",
    "fastapi": "fastapi",
    "swagger_ui_bundle": "swagger-ui-bundle",
    "starlette": "fastapi",
    "uvicorn": "uvicorn",
    "multipart": "python-multipart",
    "python_multipart": "python-multipart",
    "pydantic": "pydantic",
    "pydantic_settings": "pydantic-settings",
    "sqlalchemy": "sqlalchemy",
    "alembic": "alembic",
    "psycopg": "psycopg",
    "detectron2": "detectron2",
    "densepose": "detectron2",
    "torchvision": "torchvision",
    "scipy": "scipy",
    "av": "av",
    "accelerate": "accelerate",
    "tqdm": "tqdm",
}
# Built or pinned by the densepose Dockerfile itself: detectron2 and what it and the DensePose project import.
DENSEPOSE_BUILD = {"detectron2", "torchvision", "scipy", "av"}
# Packages an image may carry without its service's code importing them, and why.
STAGE_EXTRAS = {
    "safetensors": "diffusers and transformers load weights with it: pinned to the project's version",
}
TRAINING_EXTRAS = {
    "tensorboard": "torch.utils.tensorboard's SummaryWriter (the run's logs) loads it by name",
}
ORCHESTRATOR_EXTRAS = {
    "python-multipart": "FastAPI parses the multipart try-on upload with it, loaded by name",
    "psycopg": "SQLAlchemy loads the PostgreSQL driver named by the postgresql+psycopg:// URL",
}


# ---------------------------------------------------------------------------------------------- parsing


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARG defaults, from every stage
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args.get(m.group(1), m.group(0)), text)


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped, grouped by build stage."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip().strip('"')
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return Dockerfile(args, stages)


def service_packages(dockerfile: Dockerfile) -> list[str]:
    return dockerfile.args["SERVICE_PACKAGES"].split()


def copied_sources(dockerfile: Dockerfile) -> list[str]:
    """The build-context paths the COPY instructions of every stage take (not those from another stage)."""
    copies = [a for s in dockerfile.stages for a in s.args("COPY") if not a.startswith("--from")]
    return [word for copy in copies for word in copy.split()[:-1]]


def copied_packages(sources: list[str]) -> set[str]:
    """The project's Python packages (or single files of them) among `sources`."""
    return {s.rstrip("/") for s in sources if s.split("/")[0] in INTERNAL | {"vton_cli", "training"}}


def dockerignore_patterns(path: Path) -> set[str]:
    return {
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    }


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(3)
    return pins


def imported_top_level_modules(roots: list[Path], internal: set[str] = INTERNAL) -> set[str]:
    """Third-party top-level modules imported by the roots and every project module they reach (at any depth,
    imports inside functions included: those load the backends chosen at start); `internal` names the project's
    packages to follow."""
    seen: set[Path] = set()
    external: set[str] = set()
    queue = list(roots)
    while queue:
        path = queue.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        module_parts = path.relative_to(ROOT).with_suffix("").parts
        package = module_parts[:-1] if path.name != "__init__.py" else module_parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1])
                    names = [f"{base}.{node.module}" if node.module else base]
                    names += [f"{names[0]}.{alias.name}" for alias in node.names]
                else:
                    names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                top = name.split(".")[0]
                if not top or top in sys.stdlib_module_names or top == "__future__":
                    continue
                if top not in internal:
                    external.add(top)
                    continue
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):  # packages run their __init__ on the way down
                    candidate = ROOT.joinpath(*parts[:depth])
                    queue += [candidate / "__init__.py", candidate.with_suffix(".py")]
    return external


# ---------------------------------------------------------------------------------------------- hadolint


@pytest.mark.parametrize("image", list(ALL_DOCKERFILES))
def test_hadolint_passes_with_the_project_config(image: str) -> None:
    result = run(tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(ALL_DOCKERFILES[image]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_fails_on_warnings(tmp_path: Path) -> None:
    """The config is strict: an unpinned, root, untrusted-registry Dockerfile is refused, not just reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM quay.io/someone/python:latest\nRUN pip install requests\nUSER root\n")
    result = run(tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(bad))
    assert result.returncode != 0
    for rule in ("DL3026", "DL3013", "DL3002"):
        assert rule in result.stdout, rule


def test_every_inline_hadolint_ignore_says_why() -> None:
    for image, path in ALL_DOCKERFILES.items():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                before = lines[number - 1].strip()
                assert before.startswith("#") and "hadolint" not in before and len(before) > 20, (
                    f"{image}: line {number + 1} silences a rule without a reason on the line above"
                )


# ---------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("service", list(DOCKERFILES))
def test_multi_stage_build_ends_as_a_non_root_user_with_a_health_check(service: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[service])
    assert len(dockerfile.stages) >= 2, "multi-stage: a builder and a runtime"
    final = dockerfile.final
    assert final.name == "runtime"
    # The runtime stage takes the built virtualenv, not the build tools.
    assert any(a.startswith("--from=builder /opt/venv") for a in final.args("COPY"))
    (user,) = final.args("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, (
        f"USER {user}: numeric and not root, so runAsNonRoot can verify it"
    )
    (healthcheck,) = final.args("HEALTHCHECK")
    assert "CMD" in healthcheck
    probe = "/healthz" if service == "orchestrator" else "grpc_health.v1"
    assert probe in healthcheck
    (entrypoint,) = final.args("ENTRYPOINT")
    module = "orchestrator" if service == "orchestrator" else f"services.{service}"
    assert entrypoint == f'["python", "-m", "{module}"]'
    exposed = " ".join(final.args("EXPOSE")).split()
    port = API_PORT if service == "orchestrator" else GRPC_PORTS[service]
    assert str(port) in exposed


@pytest.mark.parametrize("stage", STAGES)
def test_gpu_stages_run_on_cuda_with_the_cuda_build_of_torch(stage: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[stage])
    for build_stage in dockerfile.stages:
        assert dockerfile.expand(build_stage.base).startswith("docker.io/nvidia/cuda:"), build_stage.base
    assert dockerfile.args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    builder_runs = " ".join(dockerfile.stages[0].args("RUN"))
    assert '--index-url "${TORCH_INDEX_URL}" -r torch.txt' in builder_runs
    assert "torch" not in service_packages(dockerfile), (
        "torch comes from the CUDA index, not requirements.txt"
    )
    env = " ".join(dockerfile.final.args("ENV"))
    assert "VTON_DEVICE=cuda" in env and f"VTON_GRPC_PORT={GRPC_PORTS[stage]}" in env
    assert "VTON_GRPC_HOST=0.0.0.0" in env, "reachable from outside the container, not loopback alone"


def test_orchestrator_image_is_slim_python_without_torch() -> None:
    dockerfile = parse_dockerfile(DOCKERFILES["orchestrator"])
    for build_stage in dockerfile.stages:
        assert re.match(r"docker\.io/python:3\.\d+-slim", build_stage.base), build_stage.base
    text = DOCKERFILES["orchestrator"].read_text()
    assert "torch" not in service_packages(dockerfile) and "TORCH_INDEX_URL" not in text
    assert "VTON_HTTP_HOST=0.0.0.0" in " ".join(dockerfile.final.args("ENV"))


def test_densepose_builds_detectron2_from_a_pinned_commit_with_cuda_kernels() -> None:
    dockerfile = parse_dockerfile(DOCKERFILES["densepose"])
    builder = dockerfile.stages[0]
    assert "-devel-" in dockerfile.expand(builder.base), "nvcc is in the CUDA devel image"
    assert re.fullmatch(r"[0-9a-f]{40}", dockerfile.args["DETECTRON2_COMMIT"])
    runs = " ".join(builder.args("RUN"))
    assert "github.com/facebookresearch/detectron2" in runs and "${DETECTRON2_COMMIT}" in runs
    assert "pip wheel --no-build-isolation" in runs and "projects/DensePose" in runs
    assert "FORCE_CUDA=1" in " ".join(builder.args("ENV"))
    assert "import detectron2._C" in runs, "the build proves the compiled extension loads"
    # Only wheels leave the builder: no compiler or source tree in the runtime stage.
    assert "-devel-" not in dockerfile.expand(dockerfile.final.base)


@pytest.mark.parametrize("service", list(DOCKERFILES))
def test_images_copy_only_their_own_service_and_no_weights(service: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[service])
    sources = copied_sources(dockerfile)
    for source in sources:
        other_services = re.match(r"services/(\w+)", source)
        if other_services and other_services.group(1) != "__init__":
            assert other_services.group(1) == service, f"{service} copies {source}"
        assert not (service != "orchestrator" and source.startswith("orchestrator")), source
        assert not re.search(r"models|\.(pth|pt|ckpt|safetensors|bin|onnx|tflite)$", source), source
    if service == "orchestrator":
        assert not any(s.startswith("services") for s in sources), "the orchestrator never ships stage code"
    # Of the Python packages, an image holds vton (runtime, stubs, weights command) and its own code: never
    # vton_cli (the CLI) or training.
    own = ["orchestrator"] if service == "orchestrator" else ["services/__init__.py", f"services/{service}"]
    packages = copied_packages(sources)
    assert packages == {"vton", *own}, f"{service} copies {sorted(packages)}"
    runs = " ".join(a for s in dockerfile.stages for a in s.args("RUN"))
    assert "weights pull" not in runs, "weights are mounted or pulled at start, never baked in"
    assert "VTON_MODELS_DIR=/models" in " ".join(dockerfile.final.args("ENV")) or service == "orchestrator"


def test_the_init_containers_weights_command_runs_without_the_cli(tmp_path: Path) -> None:
    """A stage image holds vton/ but not vton_cli/: its init container's `python -m vton.weights_cli` must run
    where vton_cli cannot be imported (a None in sys.modules makes every import of it fail)."""
    models = tmp_path / "models"
    code = (
        "import runpy, sys; sys.modules['vton_cli'] = None; "
        f"sys.argv = ['weights_cli', 'list', '--models-dir', {str(models)!r}]; "
        "runpy.run_module('vton.weights_cli', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert f"models directory: {models}" in result.stdout
    assert re.search(r"^openpose-body\s.*missing 1 of 1 files", result.stdout, re.M), result.stdout


def test_dockerignore_keeps_weights_environments_and_generated_stubs_out() -> None:
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    for required in (
        ".git",
        ".venv",
        ".tools",
        "models",
        "**/*.safetensors",
        "**/*.pth",
        "**/*.tflite",
        "**/*.ckpt",
        "vton/v1",
        "vton_cli",
        "training",
        "tests",
        "**/__pycache__",
    ):
        assert required in patterns, required


# ---------------------------------------------------------------------------------------------- dependencies


@pytest.mark.parametrize("image", list(ALL_DOCKERFILES))
def test_service_packages_are_pinned_in_requirements(image: str) -> None:
    pins = requirement_pins()
    packages = service_packages(parse_dockerfile(ALL_DOCKERFILES[image]))
    assert len(packages) == len(set(packages))
    missing = [p for p in packages if p.lower() not in pins]
    assert not missing, f"{image}: no pin in requirements.txt for {missing} (the image build would stop)"


@pytest.mark.parametrize("service", list(DOCKERFILES))
def test_image_packages_cover_what_the_service_imports_and_little_else(service: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[service])
    provided = set(service_packages(dockerfile))
    if service != "orchestrator":
        provided.add("torch")
    if service == "densepose":
        provided |= DENSEPOSE_BUILD
    package_dir = ROOT / ("orchestrator" if service == "orchestrator" else f"services/{service}")
    roots = [package_dir / "__main__.py"]
    if service != "orchestrator":  # its init container pulls weights with `python -m vton.weights_cli`
        roots.append(ROOT / "vton" / "weights_cli.py")
    modules = imported_top_level_modules(roots)
    unknown = sorted(m for m in modules if m not in DISTRIBUTIONS)
    assert not unknown, f"{service} imports {unknown}: map them to a distribution in DISTRIBUTIONS"
    needed = {DISTRIBUTIONS[m] for m in modules}
    assert needed <= provided, (
        f"{service} imports {sorted(needed - provided)} that its image does not install"
    )
    extras = ORCHESTRATOR_EXTRAS if service == "orchestrator" else STAGE_EXTRAS
    unexplained = provided - needed - set(extras) - {"torch"} - DENSEPOSE_BUILD
    assert not unexplained, f"{service}'s image installs {sorted(unexplained)} that nothing it runs imports"


def test_the_installed_package_carries_its_data_files(tmp_path: Path) -> None:
    """Images run `pip install --no-deps .` (not an editable install): the wheel must hold the weights
    manifest (read by every backend at start) and the orchestrator's web page."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("vton-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "vton/runtime/manifest.yaml" in names
    web = [p.relative_to(ROOT).as_posix() for p in (ROOT / "orchestrator" / "web").glob("*") if p.is_file()]
    assert set(web) <= names, sorted(set(web) - names)
    migrations = {p.relative_to(ROOT).as_posix() for p in (ROOT / "orchestrator/migrations").rglob("*.py")}
    assert migrations <= names, sorted(migrations - names)  # the orchestrator migrates its database at start


# ---------------------------------------------------------------------------------------------- training image


def test_the_training_image_runs_the_training_package_on_cuda_as_a_non_root_user() -> None:
    dockerfile = parse_dockerfile(TRAINING_DOCKERFILE)
    assert len(dockerfile.stages) >= 2 and dockerfile.final.name == "runtime"
    for build_stage in dockerfile.stages:
        assert dockerfile.expand(build_stage.base).startswith("docker.io/nvidia/cuda:"), build_stage.base
    assert dockerfile.args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")
    assert '--index-url "${TORCH_INDEX_URL}" -r torch.txt' in " ".join(dockerfile.stages[0].args("RUN"))
    assert "torch" not in service_packages(dockerfile), "torch comes from the CUDA index"
    final = dockerfile.final
    assert any(a.startswith("--from=builder /opt/venv") for a in final.args("COPY"))
    (user,) = final.args("USER")
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, user
    assert final.args("HEALTHCHECK") == ["NONE"], "a batch run: the Job watches its exit status"
    assert final.args("ENTRYPOINT") == ['["python", "-m", "training"]']
    assert "VTON_MODELS_DIR=/models" in " ".join(final.args("ENV"))


def test_the_training_image_holds_training_the_stages_code_and_vton_but_no_weights() -> None:
    dockerfile = parse_dockerfile(TRAINING_DOCKERFILE)
    sources = copied_sources(dockerfile)
    assert copied_packages(sources) == {"vton", "services", "training"}, sorted(copied_packages(sources))
    for source in sources:
        assert not re.search(r"models|\.(pth|pt|ckpt|safetensors|bin|onnx|tflite)$", source), source
    assert "weights pull" not in " ".join(a for s in dockerfile.stages for a in s.args("RUN"))


def test_the_training_images_packages_cover_what_training_imports_and_little_else() -> None:
    provided = set(service_packages(parse_dockerfile(TRAINING_DOCKERFILE))) | {"torch"}
    # `python -m training` is what the job runs, `python -m vton.weights_cli` its init container.
    roots = [ROOT / "training" / "__main__.py", ROOT / "vton" / "weights_cli.py"]
    modules = imported_top_level_modules(roots, INTERNAL | {"training"})
    assert "tensorboard" not in modules and "accelerate" in modules, sorted(modules)
    unknown = sorted(m for m in modules if m not in DISTRIBUTIONS)
    assert not unknown, f"training imports {unknown}: map them to a distribution in DISTRIBUTIONS"
    needed = {DISTRIBUTIONS[m] for m in modules}
    assert needed <= provided, f"training imports {sorted(needed - provided)} that its image does not install"
    unexplained = provided - needed - set(TRAINING_EXTRAS) - {"torch"}
    assert not unexplained, f"the training image installs {sorted(unexplained)} that nothing it runs imports"


def test_the_training_build_context_is_the_root_one_with_training_let_in() -> None:
    """BuildKit reads training/Dockerfile.dockerignore instead of the root .dockerignore for this build: the same
    patterns (weights, environments, stubs, tests stay out), less `training`."""
    root = dockerignore_patterns(ROOT / ".dockerignore")
    training = dockerignore_patterns(TRAINING_DOCKERFILE.with_name("Dockerfile.dockerignore"))
    assert "training" in root
    assert training == root - {"training"}, (sorted(training - root), sorted(root - training - {"training"}))


def test_the_charts_training_job_runs_this_image_and_only_what_it_holds() -> None:
    """values.yaml's training.image is the tag training/Dockerfile documents, and each command of the rendered
    training pod runs a module the image copies (a `vton ...` command would need the CLI client it lacks)."""
    from tests.deploy.test_helm_training import ENABLED, render

    values = yaml.safe_load((ROOT / "helm" / "vton" / "values.yaml").read_text())
    repository = values["training"]["image"]["repository"]
    assert f"docker build -f training/Dockerfile -t {repository} ." in TRAINING_DOCKERFILE.read_text()
    code, out, err = render(*ENABLED)
    assert code == 0, err
    (job,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    held = copied_packages(copied_sources(parse_dockerfile(TRAINING_DOCKERFILE)))
    for container in pod["initContainers"] + pod["containers"]:
        assert container["image"].startswith(f"{repository}:"), container["image"]
        command = container["command"]
        assert command[0] in {"python", "torchrun"}, (
            f"{container['name']} runs {command[0]}, not in the image"
        )
        module = command[command.index("-m") + 1]
        assert module.split(".")[0] in held, f"{container['name']} runs {module}, not in the image"
