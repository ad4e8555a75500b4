"""`vton up`'s supervisor on real child processes: a killed child comes back, a child that keeps crashing is
given up on, a child stopped on purpose stays stopped, and the restarts show in its Prometheus metrics."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from vton_cli.supervisor import Process, RestartPolicy, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "import sys; print('cannot start: port taken'); sys.exit(3)"]
FAST = RestartPolicy(initial_backoff_s=0.05, max_backoff_s=0.4, stable_after_s=30, max_fast_crashes=4)


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def supervisor(lines):
    sup = Supervisor(FAST, log=lines.append, poll_s=0.05)
    yield sup
    sup.stop(list(sup.children), timeout=5)
    sup.metrics.close()


def _until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _restarts(sup: Supervisor, name: str) -> float:
    return sup.metrics.registry.get_sample_value("vton_process_restarts_total", {"process": name}) or 0.0


def test_a_child_killed_with_sigkill_is_started_again(supervisor, lines, tmp_path: Path):
    child = Process(SLEEPER, {}, tmp_path / "warp.log")
    supervisor.start("warp", child)
    supervisor.watch()
    first = child.pid
    os.kill(first, signal.SIGKILL)
    _until(lambda: child.pid != first and child.exit_code() is None)
    assert _restarts(supervisor, "warp") == 1
    assert supervisor.metrics.registry.get_sample_value("vton_process_up", {"process": "warp"}) == 1
    assert any("warp exited with code -9" in line and "restarting in" in line for line in lines), lines
    assert any(f"warp restarted (pid {child.pid})" in line for line in lines), lines
    assert not supervisor.gave_up.is_set()


def test_a_child_that_keeps_crashing_is_given_up_after_quick_crashes_in_a_row(supervisor, lines, tmp_path):
    supervisor.start("densepose", Process(CRASHER, {}, tmp_path / "densepose.log"))
    supervisor.watch()
    assert supervisor.gave_up.wait(20)
    assert supervisor.failure == "densepose"
    # started once, restarted three times with growing waits, the fourth quick crash ends it
    assert _restarts(supervisor, "densepose") == FAST.max_fast_crashes - 1
    waits = [
        float(line.split("restarting in ")[1].split(" s")[0]) for line in lines if "restarting in" in line
    ]
    assert waits == [0.05, 0.1, 0.2], lines
    assert "giving up after 4 quick crashes in a row" in lines[-1]
    assert (tmp_path / "densepose.log").read_text().count("cannot start: port taken") == 4


def test_a_restart_on_purpose_is_no_crash_and_the_new_process_is_watched_again(supervisor, lines, tmp_path):
    child = Process(SLEEPER, {}, tmp_path / "orchestrator.log")
    supervisor.start("orchestrator", child)
    supervisor.watch()
    first = child.pid
    supervisor.restart("orchestrator", timeout=5)
    second = child.pid
    assert second != first and child.exit_code() is None
    assert _restarts(supervisor, "orchestrator") == 0 and not any("exited" in line for line in lines), lines
    # the restarted process is supervised like the first: killed, it comes back
    os.kill(second, signal.SIGKILL)
    _until(lambda: child.pid != second and child.exit_code() is None)
    assert _restarts(supervisor, "orchestrator") == 1


def test_the_backoff_doubles_up_to_its_ceiling():
    policy = RestartPolicy(initial_backoff_s=0.5, max_backoff_s=30)
    assert [policy.backoff(n) for n in range(0, 9)] == [0.5, 0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_child_stopped_on_purpose_is_not_restarted(supervisor, tmp_path):
    child = Process(SLEEPER, {}, tmp_path / "pose.log")
    supervisor.start("pose", child)
    supervisor.watch()
    supervisor.stop(["pose"], timeout=5)
    assert child.exit_code() == -signal.SIGTERM
    time.sleep(0.5)
    assert child.exit_code() == -signal.SIGTERM and _restarts(supervisor, "pose") == 0


def test_stop_sends_one_sigterm_and_waits_for_the_child_to_finish_its_shutdown(supervisor, tmp_path):
    """A second SIGTERM means "now" to the orchestrator (it skips its drain): stop sends exactly one."""
    seen = tmp_path / "signals"
    draining = (
        "import signal, sys, time\n"
        f"def on_term(*_):\n    open({str(seen)!r}, 'a').write('TERM\\n')\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        f"while not __import__('os').path.exists({str(seen)!r}):\n    time.sleep(0.01)\n"
        "time.sleep(1.0)\n"  # the drain
    )
    child = Process([sys.executable, "-c", draining], {}, tmp_path / "orchestrator.log")
    supervisor.start("orchestrator", child)
    time.sleep(0.5)  # its handler is installed
    started = time.monotonic()
    supervisor.stop(["orchestrator"], timeout=10)
    assert time.monotonic() - started >= 1.0 and child.exit_code() == 0
    assert seen.read_text() == "TERM\n"


def test_restarts_are_served_as_prometheus_metrics(supervisor, tmp_path):
    port = free_port()
    supervisor.metrics.serve(port)
    child = Process(SLEEPER, {}, tmp_path / "s3.log")
    supervisor.start("s3", child)
    supervisor.watch()
    first = child.pid
    os.kill(first, signal.SIGKILL)
    _until(lambda: child.pid != first)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'vton_process_restarts_total{process="s3"} 1.0' in text
    assert 'vton_process_up{process="s3"} 1.0' in text
