"""Webhooks against a local receiver: a finished job's JSON is POSTed signed (the snippet in docs/api.md
verifies it), a failed attempt is retried with backoff and every attempt is on the job, a pending delivery
survives a restart, and callbacks to loopback, private and link-local addresses are refused unless allowed.

The jobs here fail naming their first stage once their 1 s deadline has passed with the stages down (their
addresses are closed ports): a failed job is finished too, and its callback is what these tests watch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from orchestrator.callback_urls import CallbackPolicy, CallbackRefused
from orchestrator.webhooks import DeliveryStore
from vton.runtime import images

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
LOCAL = ("127.0.0.0/8",)


def documented_verifier():
    """`verify_vton_webhook` as docs/api.md prints it: the code block after the snippet's marker, run as is."""
    text = API_DOC.read_text()
    after = text[text.index("<!-- webhook verification snippet") :]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(API_DOC), "exec"), namespace)
    return namespace["verify_vton_webhook"]


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers with the next of `statuses` (the last
    one again once they run out)."""

    def __init__(self, statuses=(200,)) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.time()}
                    )
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/vton?shop=a"

    def wait_for(self, count: int, timeout: float = 60) -> list[dict]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), self.requests
            return list(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return images.encode_png(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))


def _form(callback_url: str) -> dict:
    return {
        "files": {"person": ("p.png", _png(1)), "garment": ("g.png", _png(2))},
        "data": {"category": "upper_body", "callback_url": callback_url},
    }


def _delivering(settings, **update):
    """Settings of an app that runs jobs (to their failure once the closed stages made them wait past their
    deadline) and delivers callbacks."""
    return settings.model_copy(
        update={
            "workers": 1,
            "stage_timeout_s": 5,
            "job_deadline_s": 1,
            "webhook_allowed_networks": LOCAL,
            "webhook_backoff_s": 0.3,
            **update,
        }
    )


def _callback_when(client, job_id: str, done, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["callback"] and done(job["callback"]):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_a_finished_job_is_posted_signed_and_the_documented_snippet_verifies_it(
    api_client, settings, receiver
):
    verify = documented_verifier()
    with api_client(_delivering(settings), tenant="shop-a") as client:
        secret = client.get("/v1/tenant").json()["webhook_secret"]
        job_id = client.post("/v1/tryon", **_form(receiver.url)).json()["id"]
        (request,) = receiver.wait_for(1)
        job = _callback_when(client, job_id, lambda c: c["status"] == "delivered")
    headers, body = request["headers"], request["body"]
    timestamp, signature = headers["X-Vton-Timestamp"], headers["X-Vton-Signature"]
    assert verify(secret, body, timestamp, signature) is True
    assert verify(secret, body.replace(b"failed", b"succeeded"), timestamp, signature) is False
    assert verify("another tenant's secret", body, timestamp, signature) is False
    old = str(int(timestamp) - 3600)  # a correct signature of an hour-old request: a replay
    old_signature = "v1=" + hmac.new(secret.encode(), old.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert verify(secret, body, old, old_signature) is False
    sent = json.loads(body)
    assert (sent["id"], sent["tenant"], sent["status"]) == (job_id, "shop-a", "failed")
    assert sent["error_code"] == "stage_unavailable" and sent["callback"]["url"] == receiver.url
    assert request["path"] == "/hooks/vton?shop=a"
    assert headers["X-Vton-Event"] == "job.finished" and headers["Content-Type"] == "application/json"
    assert headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert job["callback"]["url"] == receiver.url
    (attempt,) = job["callback"]["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None and attempt["seconds"] >= 0


def test_a_refused_delivery_is_retried_with_backoff_and_every_attempt_is_on_the_job(api_client, settings):
    receiver = Receiver(statuses=(500, 200))
    try:
        with api_client(_delivering(settings, webhook_backoff_s=0.5)) as client:
            job_id = client.post("/v1/tryon", **_form(receiver.url)).json()["id"]
            first, second = receiver.wait_for(2)
            job = _callback_when(client, job_id, lambda c: c["status"] == "delivered")
    finally:
        receiver.stop()
    assert second["at"] - first["at"] >= 0.5, "the retry waited for the backoff"
    assert first["headers"]["X-Vton-Delivery"] == second["headers"]["X-Vton-Delivery"]
    assert [(a["status_code"], a["error"]) for a in job["callback"]["attempts"]] == [
        (500, "the receiver answered HTTP 500"),
        (200, None),
    ]


def test_a_delivery_that_keeps_failing_is_given_up_after_the_retry_window(api_client, settings):
    receiver = Receiver(statuses=(503,))
    try:
        limited = _delivering(settings, webhook_backoff_s=0.2, webhook_retry_for_s=1.0)
        with api_client(limited) as client:
            job_id = client.post("/v1/tryon", **_form(receiver.url)).json()["id"]
            job = _callback_when(client, job_id, lambda c: c["status"] == "failed")
            time.sleep(0.5)
            assert client.get(f"/v1/jobs/{job_id}").json()["callback"] == job["callback"], "no more attempts"
    finally:
        receiver.stop()
    attempts = job["callback"]["attempts"]
    # retried after 0.2 s, then 0.4 s (how many fit the 1 s window depends on the poller's 0.5 s ticks)
    assert 2 <= len(attempts) <= 3 and len(attempts) == len(receiver.requests)
    assert {a["status_code"] for a in attempts} == {503}
    assert job["callback"]["next_attempt_at"] is None


def test_a_pending_delivery_survives_a_restart_of_the_orchestrator(api_client, settings):
    receiver = Receiver(statuses=(503, 200))
    try:
        slow_retry = _delivering(settings, webhook_backoff_s=3.0)
        with api_client(slow_retry) as client:
            job_id = client.post("/v1/tryon", **_form(receiver.url)).json()["id"]
            receiver.wait_for(1)
            pending = _callback_when(client, job_id, lambda c: len(c["attempts"]) == 1)
        # stopped before the retry was due: the delivery waits in the database
        assert pending["callback"]["status"] == "pending"
        with api_client(slow_retry) as client:  # a new orchestrator on the same database
            receiver.wait_for(2, timeout=30)
            job = _callback_when(client, job_id, lambda c: c["status"] == "delivered")
    finally:
        receiver.stop()
    assert [a["status_code"] for a in job["callback"]["attempts"]] == [503, 200]
    # the job itself was not run (or failed) again: only its callback was pending
    assert (job["attempts"], job["finished_at"]) == (pending["attempts"], pending["finished_at"])


def test_the_delivery_connects_to_the_address_that_was_checked(api_client, settings, receiver):
    resolved = {"hooks.shop.test": ["127.0.0.1"]}  # a name no real DNS knows: only the check's answer is used
    with api_client(_delivering(settings)) as client:
        client.app.state.ctx.webhooks.policy.resolve = lambda host, port: resolved[host]
        url = f"http://hooks.shop.test:{receiver.port}/hook"
        job_id = client.post("/v1/tryon", **_form(url)).json()["id"]
        (request,) = receiver.wait_for(1)
        _callback_when(client, job_id, lambda c: c["status"] == "delivered")
    assert request["headers"]["Host"] == f"hooks.shop.test:{receiver.port}"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1, a loopback address"),
        ("http://10.1.2.3/hook", "10.1.2.3, a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://[::1]:8080/hook", "::1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://[fd00::1]/hook", "a private address"),
        ("http://localhost:8080/hook", "'localhost' resolves to"),
        ("http://0.0.0.0/hook", "0.0.0.0"),
        ("ftp://files.example.com/hook", "http:// or https://"),
        ("not a url", "http:// or https://"),
    ],
)
def test_callbacks_to_internal_addresses_are_refused(api_client, settings, url, needle):
    with api_client(settings) as client:
        response = client.post("/v1/tryon", **_form(url))
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"].startswith("callback_url: ") and needle in body["error"]
        assert body["detail"] == {"field": "callback_url", "value": url}
        assert client.app.state.ctx.store.counts_by_status()["queued"] == 0


def test_an_allowed_network_lets_its_addresses_through_and_no_others(api_client, settings):
    with api_client(settings.model_copy(update={"webhook_allowed_networks": LOCAL})) as client:
        assert client.post("/v1/tryon", **_form("http://127.0.0.1:9000/hook")).status_code == 202
        assert client.post("/v1/tryon", **_form("http://[::ffff:127.0.0.1]:9000/hook")).status_code == 202
        for refused in ("http://[::1]:9000/hook", "http://10.1.2.3/hook", "http://169.254.169.254/"):
            assert client.post("/v1/tryon", **_form(refused)).status_code == 422, refused


# --- the address policy on its own (a fake resolver: no DNS needed) --------------------------------------------


def _policy(names: dict[str, list[str]], **kwargs) -> CallbackPolicy:
    def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError("Name or service not known")
        return names[host]

    return CallbackPolicy(resolve=resolve, **kwargs)


def test_a_public_name_passes_and_a_name_with_any_internal_address_does_not():
    policy = _policy(
        {
            "hooks.shop.example": ["93.184.215.14", "2606:2800:21f:cb07::1"],
            "mixed.example": ["93.184.215.14", "10.0.0.7"],
        }
    )
    target = policy.check("https://hooks.shop.example/vton")
    assert (target.host, target.port, target.addresses) == (
        "hooks.shop.example",
        443,
        ("93.184.215.14", "2606:2800:21f:cb07::1"),
    )
    with pytest.raises(CallbackRefused, match="'mixed.example' resolves to 10.0.0.7, a private address"):
        policy.check("https://mixed.example/vton")
    with pytest.raises(CallbackRefused, match="does not resolve"):
        policy.check("https://nowhere.example/vton")


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "::ffff:a00:1",  # IPv4-mapped 10.0.0.1
        "fe80::1%eth0",  # link-local with a scope
        "100.64.0.1",  # shared address space (carrier NAT)
        "224.0.0.251",  # multicast
        "192.0.2.10",  # documentation
        "::",
    ],
)
def test_internal_addresses_in_every_form_are_refused(address):
    with pytest.raises(
        CallbackRefused, match="callbacks to loopback, private and link-local addresses are refused"
    ):
        _policy({"sneaky.example": [address]}).check("http://sneaky.example/hook")


def test_the_host_allowlist_and_the_network_allowlist():
    names = {
        "hooks.shop.example": ["93.184.215.14"],
        "a.partner.example": ["10.20.0.5"],
        "evil.example": ["93.184.215.15"],
    }
    policy = _policy(
        names, allowed_hosts=("hooks.shop.example", "*.partner.example"), allowed_networks=("10.20.0.0/16",)
    )
    policy.check("https://hooks.shop.example/x")
    policy.check("https://a.partner.example/x")  # private, but in an allowed network
    with pytest.raises(
        CallbackRefused, match="callbacks may go to hooks.shop.example, \\*.partner.example only"
    ):
        policy.check("https://evil.example/x")
    with pytest.raises(CallbackRefused, match="only"):
        policy.check("https://partner.example.evil.example/x")
    with pytest.raises(CallbackRefused, match="malformed"):
        policy.check("http://hooks.shop.example:99999/x")


def test_deliveries_are_rows_of_the_database(api_client, settings, receiver):
    with api_client(_delivering(settings)) as client:
        job_id = client.post("/v1/tryon", **_form(receiver.url)).json()["id"]
        receiver.wait_for(1)
        _callback_when(client, job_id, lambda c: c["status"] == "delivered")
    store = DeliveryStore(client.app.state.ctx.store.engine)
    delivery = store.for_subject("job", job_id)
    assert (delivery.tenant_id, delivery.url, delivery.status) == ("shop", receiver.url, "delivered")
    assert delivery.id == receiver.requests[0]["headers"]["X-Vton-Delivery"]
