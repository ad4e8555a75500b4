"""100 try-ons submitted at the same moment to `vton up` on loopback (make test-reliability): every one is
accepted and finishes, none is lost; the figures are submit-to-finish p50/p95 and each process's resident
memory before and after."""

from __future__ import annotations

import statistics
import threading

from tests.reliability.faults import ledger_for, record, reliability
from tests.vton_up import VtonUp

pytestmark = reliability
SUBMISSIONS = 100


def test_100_concurrent_submissions_all_finish_and_memory_stays_bounded(tmp_path, examples):
    up = VtonUp(tmp_path / "platform").start()
    ledger = ledger_for(up.url, up.api_key, examples)
    try:
        warm = ledger.submit()  # the first job loads what each stage loads lazily
        ledger.follow(timeout=120)
        del ledger.accepted[warm], ledger.finished[warm]
        before = up.memory()
        start = threading.Barrier(SUBMISSIONS)
        errors: list[BaseException] = []

        def submit() -> None:
            try:
                start.wait(60)
                ledger.submit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=submit) for _ in range(SUBMISSIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert not errors, errors[:3]
        ledger.follow(timeout=1800, every_s=2.0)  # 100 jobs polled: the polling is load too
        after = up.memory()
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.kill()
    summary = ledger.summary()
    latencies = ledger.latencies()
    q = statistics.quantiles(latencies, n=100)
    mib = 1 << 20
    record(
        "overload",
        {
            "submissions": SUBMISSIONS,
            **summary,
            "refused_submissions_retried": ledger.refused,
            "rate_limited_requests": ledger.rate_limited,
            "submit_to_finish_s": {
                "p50": round(q[49], 1),
                "p95": round(q[94], 1),
                "max": round(latencies[-1], 1),
            },
            "rss_mib": {
                n: {"before": round(before[n] / mib), "after": round(after.get(n, 0) / mib)} for n in before
            },
        },
    )
    assert summary == {"accepted": SUBMISSIONS, "succeeded": SUBMISSIONS, "failed_with_message": 0, "lost": 0}
    for name, rss in before.items():
        # the queue lives in the database and S3, not in memory: no process grows with it
        assert after[name] < rss * 1.5 + 300 * mib, (name, rss, after[name])
