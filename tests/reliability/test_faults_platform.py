"""Faults injected into a running platform under a steady stream of jobs (make test-reliability).

- kill -9 of every process of `vton up` in turn (the five stages, the S3 server, the orchestrator): the
  supervisor restarts each, and every accepted job finishes;
- outages of 20 s (a stage, then S3) and 60 s (a stage): no job is claimed while a dependency is down, and
  none fails;
- an outage longer than the jobs' deadline: those jobs fail with a message naming the stage, the rest finish.
Each test writes its figures to out/reliability/ (docs/reliability.md quotes them)."""

from __future__ import annotations

import time

import httpx

from tests.reliability.faults import Feeder, hold_down, in_process_platform, ledger_for, record, reliability
from tests.vton_up import VtonUp
from vton.runtime.vocab import STAGES

pytestmark = reliability
NO_LOSS = {"failed_with_message": 0, "lost": 0}


def test_kill_9_of_every_process_under_load_loses_no_job(tmp_path, examples):
    up = VtonUp(tmp_path / "platform").start()
    ledger = ledger_for(up.url, up.api_key, examples)
    kills = []
    try:
        with Feeder(ledger, every_s=2.0):
            time.sleep(6)
            for name in (*STAGES, "s3", "orchestrator"):
                pid = up.kill9(name)
                killed = time.monotonic()
                up.wait_restarted(name, pid)
                kills.append({"process": name, "restarted_after_s": round(time.monotonic() - killed, 2)})
                time.sleep(6)
        ledger.follow(timeout=600)
        restarts = httpx.get(up.supervisor_url, timeout=10).text
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.kill()
    summary = ledger.summary()
    record("kill9", {"faults": kills, **summary, "refused_submissions_retried": ledger.refused})
    assert summary["accepted"] >= 15
    assert {k: summary[k] for k in NO_LOSS} == NO_LOSS, ledger.failed()
    for name in (*STAGES, "s3", "orchestrator"):
        assert f'vton_process_restarts_total{{process="{name}"}} 1.0' in restarts, name


def test_a_stage_and_s3_down_20_s_and_a_stage_down_60_s_fail_no_job(tmp_path, examples):
    platform = in_process_platform(tmp_path / "platform")
    outages = []
    with platform:
        ledger = ledger_for(platform.config.api_url, platform.api_key, examples)
        with Feeder(ledger, every_s=3.0):
            time.sleep(5)
            for name, seconds in (("warp", 20), ("s3", 20), ("diffusion", 60)):
                down = hold_down(platform, name, seconds)
                outages.append({"process": name, "down_s": round(down, 1)})
                time.sleep(8)
        ledger.follow(timeout=600)
        retries = httpx.get(platform.config.api_url + "/metrics", timeout=10).text
    summary = ledger.summary()
    record("outages", {"faults": outages, **summary, "refused_submissions_retried": ledger.refused})
    assert summary["accepted"] >= 25
    assert {k: summary[k] for k in NO_LOSS} == NO_LOSS, ledger.failed()
    assert 'vton_dependency_up{dependency="warp"} 1.0' in retries  # it went down and came back
    assert 'vton_dependency_up{dependency="storage"} 1.0' in retries


def test_jobs_past_their_deadline_fail_naming_the_stage_and_the_others_finish(
    tmp_path, examples, monkeypatch
):
    monkeypatch.setenv("VTON_JOB_DEADLINE_S", "10")
    platform = in_process_platform(tmp_path / "platform")
    with platform:
        ledger = ledger_for(platform.config.api_url, platform.api_key, examples)
        supervisor = platform.supervisor
        parsing = supervisor.children["parsing"].service
        supervisor.stop(["parsing"], timeout=0.1)
        during = [ledger.submit() for _ in range(4)]
        time.sleep(20)  # past their deadline
        supervisor.start("parsing", parsing)
        supervisor.watch()
        after = [ledger.submit() for _ in range(2)]
        ledger.follow(timeout=300)
    failed = ledger.failed()
    record(
        "deadline",
        {"faults": [{"process": "parsing", "down_s": 20, "deadline_s": 10}], **ledger.summary()},
    )
    assert set(failed) == set(during), failed
    for job_id in during:
        job = ledger.finished[job_id]
        assert job["error_code"] == "stage_unavailable" and job["error_stage"] == "parsing"
        assert "parsing stage" in job["error"] and "(its deadline)" in job["error"]
    assert all(ledger.finished[i]["status"] == "succeeded" for i in after)
    assert ledger.summary()["lost"] == 0
