"""SIGTERM to `vton up` under load (make test-reliability): jobs queued and running, a client waiting with
?wait=true. The API stops first (the waiting client gets 503 JSON with its job's id, running jobs go back to
the queue), then the stages, S3 last; no job fails. `vton up` again on the same data directory finishes every
one of them."""

from __future__ import annotations

import signal
import threading
import time

from tests.reliability.faults import ledger_for, record, reliability
from tests.vton_up import VtonUp
from vton.runtime.vocab import STAGES

pytestmark = reliability


def _gone_order(up: VtonUp, timeout: float) -> dict[str, float]:
    """Watch the children of `vton up` until they are all gone: when each one went (monotonic seconds)."""
    alive = up.processes()
    gone: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        now_alive = up.processes()
        for name in list(alive):
            if name not in now_alive or now_alive[name] != alive[name]:
                gone[name] = time.monotonic()
                del alive[name]
        time.sleep(0.02)
    assert not alive, f"still running: {alive}"
    return gone


def test_sigterm_under_load_stops_the_api_first_and_every_job_finishes_after_a_restart(tmp_path, examples):
    data_dir = tmp_path / "platform"
    up = VtonUp(data_dir).start()
    ledger = ledger_for(up.url, up.api_key, examples)
    waiting: dict = {}
    try:
        queued = [ledger.submit() for _ in range(8)]  # 2 workers: two run, six wait in the queue

        def wait_on_a_job() -> None:
            with up.client(timeout=120) as api:
                response = api.post(
                    "/v1/tryon?wait=true",
                    files={"person": ("p.png", ledger.person), "garment": ("g.jpg", ledger.garment)},
                    data={"category": "upper_body"},
                )
            waiting.update(status=response.status_code, body=response.json())

        client = threading.Thread(target=wait_on_a_job)
        client.start()
        time.sleep(3)  # jobs running, the client waiting
        sent = time.monotonic()
        up.proc.send_signal(signal.SIGTERM)
        gone = _gone_order(up, timeout=90)
        client.join(30)
        code = up.proc.wait(30)
    finally:
        if up.proc.poll() is None:
            up.kill()
    assert code == 0, up.text[-3000:]
    assert waiting["status"] == 503 and "shutting down" in waiting["body"]["error"], waiting
    waited_id = waiting["body"]["detail"]["id"]
    # the API went first, after its drain (1 s in vton up), every stage before S3
    assert gone["orchestrator"] - sent >= 1.0
    assert gone["orchestrator"] < min(gone[s] for s in STAGES) <= max(gone[s] for s in STAGES) < gone["s3"]

    ledger.accepted[waited_id] = time.monotonic()
    again = VtonUp(data_dir).start()
    ledger.url = again.url
    try:
        ledger.follow(timeout=300)
        assert again.stop() == 0
    finally:
        if again.proc.poll() is None:
            again.kill()
    summary = ledger.summary()
    record(
        "sigterm",
        {
            "faults": [{"signal": "SIGTERM", "jobs_queued_or_running": len(queued) + 1}],
            "stopped_after_s": round(max(gone.values()) - sent, 2),
            "stop_order_s": {
                name: round(t - sent, 2) for name, t in sorted(gone.items(), key=lambda kv: kv[1])
            },
            **summary,
        },
    )
    assert summary == {"accepted": 9, "succeeded": 9, "failed_with_message": 0, "lost": 0}, ledger.failed()
