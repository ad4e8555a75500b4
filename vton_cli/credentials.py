"""The keys the CLI sends, and the secrets `vton up` gives the orchestrator it starts.

Keys for a server are found, in this order: the command's own option, `VTON_API_KEY` / `VTON_ADMIN_KEY`,
then the credentials file `$VTON_CONFIG_DIR/credentials.json` (default `~/.config/vton/`, or under
`$XDG_CONFIG_HOME`), which holds an API key and an admin key per server URL and is readable by its owner only.
`vton up` writes the keys of the platform it started there, so `vton tryon` and the other commands just work.

`vton up` makes the orchestrator's key pepper and admin key once and keeps them (mode 600) in the data
directory, beside the S3 keys; the first API key (tenant `default`) is kept there too, so a restarted
platform prints the same key.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import httpx

API_KEY_ENV = "VTON_API_KEY"
ADMIN_KEY_ENV = "VTON_ADMIN_KEY"
PEPPER_ENV = "VTON_KEY_PEPPER"
FIRST_TENANT = "default"


def config_dir() -> Path:
    if os.environ.get("VTON_CONFIG_DIR"):
        return Path(os.environ["VTON_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vton"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def _write_private(path: Path, data: dict) -> None:
    """Write JSON readable by its owner only: created with mode 600, never readable by others in between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(scratch, 0o600)  # an existing scratch file keeps its mode through O_CREAT
    os.replace(scratch, path)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read {path}: {exc}") from None


def _server(url: str) -> str:
    return url.rstrip("/")


def stored_key(server: str, kind: str = "api_key") -> str | None:
    """The key of `kind` ("api_key" or "admin_key") for `server`: from the environment, else the file."""
    env = os.environ.get(API_KEY_ENV if kind == "api_key" else ADMIN_KEY_ENV)
    if env:
        return env
    return _read(credentials_path()).get("servers", {}).get(_server(server), {}).get(kind)


def save_keys(server: str, **keys: str) -> Path:
    """Keep keys for `server` in the credentials file (mode 600); returns its path."""
    path = credentials_path()
    data = _read(path)
    data.setdefault("servers", {}).setdefault(_server(server), {}).update(keys)
    _write_private(path, data)
    return path


# --- the platform `vton up` starts ------------------------------------------------------------------------------


def platform_secrets(data_dir: Path) -> dict[str, str]:
    """The orchestrator's key pepper and admin key as environment variables: from the environment when set
    there, else made once and kept (mode 600) in the data directory."""
    path = data_dir / "platform-secrets.json"
    kept = _read(path)
    if not kept:
        kept = {
            "key_pepper": secrets.token_urlsafe(32),
            "admin_key": "vton_admin_" + secrets.token_urlsafe(32),
        }
        _write_private(path, kept)
    return {
        PEPPER_ENV: os.environ.get(PEPPER_ENV) or kept["key_pepper"],
        ADMIN_KEY_ENV: os.environ.get(ADMIN_KEY_ENV) or kept["admin_key"],
    }


def first_api_key(api_url: str, data_dir: Path) -> str:
    """The API key `vton up` hands out: the one kept in the data directory while the orchestrator accepts it,
    else a new key of the tenant `default` made through the admin route (and kept)."""
    path = data_dir / "api-key.json"
    kept = _read(path).get("api_key")
    with httpx.Client(base_url=api_url, timeout=30) as http:
        if kept and http.get("/v1/tenant", headers={"Authorization": f"Bearer {kept}"}).status_code == 200:
            return kept
        admin_key = platform_secrets(data_dir)[ADMIN_KEY_ENV]
        response = http.post(
            "/v1/admin/keys",
            json={"tenant": FIRST_TENANT, "name": "vton up"},
            headers={"Authorization": f"Bearer {admin_key}"},
        )
    if response.status_code != 201:
        raise RuntimeError(
            f"creating the first API key failed: HTTP {response.status_code} {response.text[:300]}"
        )
    key = response.json()["key"]
    _write_private(path, {"api_key": key})
    return key


def remember_platform(api_url: str, data_dir: Path, api_key: str) -> Path:
    """Store the started platform's API key and admin key for the CLI; returns the credentials file."""
    return save_keys(api_url, api_key=api_key, admin_key=platform_secrets(data_dir)[ADMIN_KEY_ENV])
