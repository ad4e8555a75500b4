"""API keys: every /v1 route needs one (401 without, 403 revoked), keys are stored as keyed hashes, the admin
routes need the admin key, each key has a rate (429 with Retry-After), and `vton keys` manages them."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from orchestrator.app import create_app
from orchestrator.settings import Settings, SettingsError
from vton_cli import cli
from vton_cli.client import ApiError, VtonClient

OPEN_ROUTES = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/")


def _v1_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every /v1 route of the API (its OpenAPI schema) but the admin ones, parameters filled."""
    routes = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/admin/"):
            continue
        concrete = path.replace("{job_id}", "0" * 32).replace("{key}", "catalog/a.png")
        routes.extend((method.upper(), concrete) for method in operations)
    return routes


def test_every_v1_route_answers_401_json_without_a_valid_key(api_client, settings, new_key):
    with api_client(settings) as client:
        key = new_key(client)
        routes = _v1_routes(client)
        assert {path for _, path in routes} >= {
            "/v1/tryon",
            f"/v1/jobs/{'0' * 32}",
            "/v1/objects",
            "/v1/tenant",
        }
        key_id = key.split("_")[1]
        wrong_secret = f"vton_{key_id}_{'A' * 43}"  # an existing key's id with another secret
        for method, path in routes:
            for headers in (
                {},
                {"Authorization": "Bearer nonsense"},
                {"Authorization": f"Bearer {wrong_secret}"},
            ):
                response = client.request(method, path, headers={"Authorization": "", **headers})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert set(response.json()) == {"error", "detail"}
        missing = client.get("/v1/tenant", headers={"Authorization": ""}).json()["error"]
        assert "Authorization: Bearer" in missing
        assert client.get("/v1/tenant", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_health_metrics_docs_and_the_page_stay_open(settings):
    with TestClient(create_app(settings)) as client:
        for path in OPEN_ROUTES:
            assert client.get(path).status_code in (200, 503), path  # /readyz: the stages are not there


def test_a_revoked_key_answers_403_and_the_tenants_other_keys_go_on(
    api_client, settings, new_key, admin_headers
):
    with api_client(settings, tenant="shop") as client:
        doomed, other = new_key(client, "shop", name="laptop"), new_key(client, "shop")
        doomed_id = doomed.split("_")[1]
        revoked = client.delete(f"/v1/admin/keys/{doomed_id}", headers=admin_headers)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        response = client.get("/v1/tenant", headers={"Authorization": f"Bearer {doomed}"})
        assert response.status_code == 403
        assert response.json()["error"] == f"API key {doomed_id} was revoked"
        assert client.get("/v1/tenant", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        again = client.delete(f"/v1/admin/keys/{doomed_id}", headers=admin_headers)
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"], "the first revocation time stays"
        assert client.delete("/v1/admin/keys/000000000000", headers=admin_headers).status_code == 404


def test_keys_are_stored_as_hmacs_keyed_with_the_pepper(api_client, settings, new_key):
    with api_client(settings) as client:
        key = new_key(client, "shop")
    engine = create_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, hash FROM vton_api_keys")).all()
    engine.dispose()
    stored = dict(rows)[key.split("_")[1]]
    assert (
        stored
        == hmac.new(settings.key_pepper.get_secret_value().encode(), key.encode(), hashlib.sha256).hexdigest()
    )
    database = (settings.data_dir / "jobs.db").read_bytes()
    for path in settings.data_dir.glob("jobs.db*"):  # the WAL files too
        database += path.read_bytes()
    assert key.encode() not in database and key.split("_", 2)[2].encode() not in database
    # another pepper: the same database, the same key, no longer valid
    with TestClient(
        create_app(settings.model_copy(update={"key_pepper": SecretStr("another-pepper-0123456789")}))
    ) as other:
        assert other.get("/v1/tenant", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_the_orchestrator_refuses_to_start_without_a_pepper(settings):
    with pytest.raises(SettingsError, match="VTON_KEY_PEPPER is not set"):
        create_app(settings.model_copy(update={"key_pepper": None}))


def test_the_admin_routes_need_the_admin_key(api_client, settings):
    with api_client(settings) as client:
        api_key_only = client.get("/v1/admin/keys")  # the client's own API key is no admin key
        assert api_key_only.status_code == 401 and api_key_only.json()["error"] == "invalid admin key"
        assert client.get("/v1/admin/keys", headers={"Authorization": ""}).status_code == 401
        bad = client.post(
            "/v1/admin/keys",
            json={"tenant": "Bad Tenant!"},
            headers={"Authorization": f"Bearer {settings.admin_key.get_secret_value()}"},
        )
        assert bad.status_code == 422 and "not a valid tenant id" in bad.json()["error"]
    with TestClient(create_app(settings.model_copy(update={"admin_key": None}))) as client:
        off = client.get("/v1/admin/keys", headers={"Authorization": "Bearer anything-at-all"})
        assert off.status_code == 403 and "VTON_ADMIN_KEY" in off.json()["error"]


def test_a_key_over_its_rate_answers_429_with_retry_after(api_client, settings, new_key):
    with api_client(settings) as client:
        slow = new_key(client, "shop", rate_per_s=0.25, burst=2)
        headers = {"Authorization": f"Bearer {slow}"}
        assert [client.get("/v1/tenant", headers=headers).status_code for _ in range(2)] == [200, 200]
        limited = client.get("/v1/tenant", headers=headers)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] in ("4", "3")  # 1 token at 0.25/s, a little already refilled
        assert limited.json()["detail"]["reason"] == "rate_limit"
        assert client.get("/v1/tenant").status_code == 200, "another key's rate is its own"


def test_the_default_rate_comes_from_the_settings(api_client, settings):
    with api_client(settings.model_copy(update={"rate_limit_per_s": 0.1, "rate_limit_burst": 3})) as client:
        codes = [client.get("/v1/tenant").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


# --- `vton keys` against a served orchestrator ----------------------------------------------------------------


@pytest.fixture
def served(settings):
    """The orchestrator served over HTTP on a free port (uvicorn in a thread), as the CLI reaches it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the orchestrator did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def _vton(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_vton_keys_create_list_and_revoke(served, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("VTON_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("VTON_API_KEY", raising=False)
    monkeypatch.delenv("VTON_ADMIN_KEY", raising=False)
    code, _, err = _vton("keys", "list", "--server", served)
    assert code == 1 and "no admin key" in err

    monkeypatch.setenv("VTON_ADMIN_KEY", settings.admin_key.get_secret_value())
    code, out, err = _vton(
        "keys", "create", "--tenant", "shop", "--name", "catalog sync", "--save", "--server", served
    )
    assert code == 0, err
    key = out.split()[2]
    key_id = key.split("_")[1]
    assert f"id {key_id}, tenant shop" in out and "webhook signing secret" in out
    credentials = tmp_path / "config" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert json.loads(credentials.read_text())["servers"][served]["api_key"] == key
    with VtonClient(served) as client:  # the saved key is the one the CLI's client sends
        assert client.http.get("/v1/tenant").json()["id"] == "shop"

    code, out, _ = _vton("keys", "list", "--server", served)
    line = next(line for line in out.splitlines() if line.startswith(key_id))
    assert "shop" in line and "active" in line and "catalog sync" in line
    assert key not in out, "a listing never shows a key"

    code, out, _ = _vton("keys", "revoke", key_id, "--server", served)
    assert code == 0 and f"API key {key_id} of tenant shop revoked" in out
    assert httpx.get(served + "/v1/tenant", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    code, out, _ = _vton("keys", "list", "--tenant", "shop", "--server", served)
    assert "revoked" in next(line for line in out.splitlines() if line.startswith(key_id))

    code, _, err = _vton("keys", "create", "--tenant", "Not Valid", "--server", served)
    assert code == 1 and "not a valid tenant id" in err


def test_a_client_without_a_key_says_where_keys_come_from(served, tmp_path, monkeypatch):
    monkeypatch.setenv("VTON_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("VTON_API_KEY", raising=False)
    with VtonClient(served) as client, pytest.raises(ApiError, match="VTON_API_KEY") as failure:
        client.job("0" * 32)
    assert failure.value.status == 401


def test_the_settings_take_the_webhook_lists_comma_separated(clean_env):
    clean_env.setenv("VTON_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8, fd00::/8")
    clean_env.setenv("VTON_WEBHOOK_ALLOWED_HOSTS", "hooks.shop.example,*.partner.example")
    settings = Settings()
    assert settings.webhook_allowed_networks == ("127.0.0.0/8", "fd00::/8")
    assert settings.webhook_allowed_hosts == ("hooks.shop.example", "*.partner.example")
    clean_env.setenv("VTON_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(Exception, match="not a network"):
        Settings()


def test_the_web_page_asks_for_the_key_once_and_sends_it(settings):
    with TestClient(create_app(settings)) as client:
        page = client.get("/").text
    assert 'id="api-key"' in page and 'id="save-key"' in page
    assert "localStorage.setItem" in page and "Authorization: `Bearer ${localStorage.getItem(KEY)}`" in page
