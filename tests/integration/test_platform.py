"""The whole platform through `vton up` in a subprocess, used over HTTP as a shop's engineer would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.vton_up import REPO, VTON, JobLedger, VtonUp
from vton.runtime import images
from vton.runtime.vocab import JOB_STEPS, STAGES, Category
from vton_cli.client import VtonClient

SHARED = (REPO / ".." / "shared" / "data").resolve()


def vton(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """One `vton` command to its end."""
    return subprocess.run(
        [*VTON, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def vton_eval(platform: dict, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return vton("eval", *args, "--server", platform["url"], "--out", str(out), timeout=600)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    # `vton up` stores its API key for the CLI in the config dir: this module's own, which the `vton`
    # commands and the in-process clients below read it from too
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VTON_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
        up = VtonUp(tmp_path_factory.mktemp("platform")).start()
        yield {"url": up.url, "proc": up.proc, "output": up.output, "up": up, "auth": up.headers}
        if up.proc.poll() is None:
            up.stop(60)


def _person_and_garment() -> tuple[Path, Path]:
    if SHARED.is_dir():
        return (
            SHARED / "pairs" / "vitonhd" / "image" / "00006_00.jpg",
            SHARED / "garments" / "upper" / sorted(os.listdir(SHARED / "garments" / "upper"))[0],
        )
    pytest.skip("../shared/data is not on this machine")


def test_up_prints_every_address(platform):
    text = "".join(platform["output"])
    for name in ("s3", *STAGES, "api"):
        assert f"  {name}" in text, f"{name} address missing from:\n{text}"
    assert httpx.get(platform["url"] + "/readyz", timeout=10).status_code == 200
    # the first API key: printed, stored for the CLI (owner-only), and required by the API
    credentials = Path(os.environ["VTON_CONFIG_DIR"]) / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    stored = json.loads(credentials.read_text())["servers"][platform["url"]]
    assert f"Bearer {stored['api_key']}" == platform["auth"]["Authorization"]
    assert httpx.get(platform["url"] + "/v1/tenant", timeout=10).status_code == 401
    tenant = httpx.get(platform["url"] + "/v1/tenant", headers=platform["auth"], timeout=10).json()
    assert tenant["id"] == "default"


def test_a_tryon_of_real_photos_changes_the_garment_region_only(platform, tmp_path):
    person_path, garment_path = _person_and_garment()
    person = images.read_rgb(str(person_path))
    with VtonClient(platform["url"]) as client:
        job = client.submit(person_path, garment_path, Category.UPPER_BODY, seed=3)
        assert job.status in ("queued", "running", "succeeded")
        seen = []
        job = client.wait(job.id, on_update=lambda j: seen.append(j.status), timeout=300)
        assert job.status == "succeeded", job.error
        result = images.decode_rgb(client.download(job.result_url))
        mask = images.decode_gray(client.download(job.artifacts["agnostic_mask"])) > 0
        for name in ("pose_skeleton", "densepose", "parsing", "warped_garment", "pose"):
            assert client.download(job.artifacts[name])
    assert result.shape == person.shape
    diff = np.abs(result.astype(int) - person.astype(int)).sum(2)
    assert diff[mask].mean() > 10, "the garment region must change"
    far = cv2.dilate(mask.astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    assert far.mean() > 0.2 and diff[far].max() == 0, "pixels far from the garment must equal the person's"
    assert {s.name for s in job.stages} >= set(STAGES)
    assert job.raw["stages"]["pose"]["people_detected"] == 1
    assert all(s.status == "succeeded" and s.backend for s in job.stages)


def test_a_large_photo_is_tried_on_at_working_size_and_returned_at_its_own(platform, examples, tmp_path):
    big = cv2.resize(
        images.read_rgb(str(examples / "avatars" / "3.png")), (1536, 2752), interpolation=cv2.INTER_CUBIC
    )
    person_path = tmp_path / "big.png"
    images.write_png(str(person_path), big)
    with VtonClient(platform["url"]) as client:
        job = client.wait(
            client.submit(
                person_path, examples / "clothes" / "shirts" / "2_front.jpg", Category.UPPER_BODY
            ).id,
            timeout=300,
        )
        assert job.status == "succeeded", job.error
        result = images.decode_rgb(client.download(job.result_url))
        small_mask = images.decode_gray(client.download(job.artifacts["agnostic_mask"]))
    assert result.shape == big.shape
    assert small_mask.shape[0] * small_mask.shape[1] <= 2_400_000  # the stages saw the working size
    mask = cv2.resize(small_mask, (big.shape[1], big.shape[0])) > 0
    far = cv2.dilate(mask.astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    assert np.array_equal(result[far], big[far])
    assert np.abs(result.astype(int) - big.astype(int)).sum(2)[mask].mean() > 10


def test_two_people_the_largest_is_tried_on_and_the_job_says_two_were_found(platform, examples, tmp_path):
    big = images.read_rgb(str(examples / "avatars" / "3.png"))
    small = cv2.resize(
        images.read_rgb(str(examples / "avatars" / "2.png")), (384, 688), interpolation=cv2.INTER_AREA
    )
    canvas = np.full((big.shape[0], big.shape[1] + 600, 3), 235, np.uint8)
    canvas[:, : big.shape[1]] = big
    canvas[-688:, big.shape[1] + 100 : big.shape[1] + 484] = small
    path = tmp_path / "two.png"
    images.write_png(str(path), canvas)
    with VtonClient(platform["url"]) as client:
        job = client.wait(
            client.submit(path, examples / "clothes" / "shirts" / "2_front.jpg", Category.UPPER_BODY).id,
            timeout=300,
        )
        assert job.status == "succeeded", job.error
        mask = images.decode_gray(client.download(job.artifacts["agnostic_mask"])) > 0
    assert job.raw["stages"]["pose"]["people_detected"] == 2
    assert mask[:, : big.shape[1]].sum() > 50 * mask[:, big.shape[1] :].sum(), "the larger person is tried on"


@pytest.mark.parametrize(
    ("person", "category", "status", "needle"),
    [
        (b"plain text, not a photo", Category.UPPER_BODY, 400, "not an image"),
        (b"", Category.UPPER_BODY, 400, "empty"),
        (None, "hats", 422, "category"),
    ],
)
def test_bad_requests_answer_4xx_with_a_json_error(platform, examples, person, category, status, needle):
    good = (examples / "avatars" / "3.png").read_bytes()
    garment = (examples / "clothes" / "shirts" / "2_front.jpg").read_bytes()
    files = {"person": ("p.png", good if person is None else person), "garment": ("g.jpg", garment)}
    response = httpx.post(
        platform["url"] + "/v1/tryon",
        data={"category": category},
        files=files,
        headers=platform["auth"],
        timeout=30,
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert needle in str(body).lower()


def test_a_photo_without_a_person_fails_with_no_person_found(platform, examples):
    garment = (examples / "clothes" / "shirts" / "2_front.jpg").read_bytes()
    files = {"person": ("p.jpg", garment), "garment": ("g.jpg", garment)}
    response = httpx.post(
        platform["url"] + "/v1/tryon?wait=true",
        data={"category": Category.UPPER_BODY},
        files=files,
        headers=platform["auth"],
        timeout=120,
    )
    assert response.status_code == 422
    assert "no person found" in response.json()["error"]


def test_vton_tryon_cli_writes_result_and_artifacts(platform, examples, tmp_path):
    out = tmp_path / "result.png"
    art = tmp_path / "artifacts"
    run = vton(
        "tryon",
        str(examples / "avatars" / "1.png"),
        str(examples / "clothes" / "shirts" / "1_front.jpg"),
        "--category",
        Category.UPPER_BODY,
        "-o",
        str(out),
        "--server",
        platform["url"],
        "--artifacts",
        str(art),
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pose: done" in run.stdout and "diffusion: done" in run.stdout
    result = images.read_rgb(str(out))
    assert result.shape == images.read_rgb(str(examples / "avatars" / "1.png")).shape
    names = {p.name for p in art.iterdir()}
    assert {"job.json", "agnostic_mask.png", "warped_garment.png", "pose.json"} <= names


def test_vton_eval_reports_paired_ssim_above_the_masked_person_and_writes_a_sheet(platform, tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not on this machine")
    run = vton_eval(platform, tmp_path, str(SHARED / "pairs" / "vitonhd"))
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["pairs"]) == 4 and all(p["ssim"] is not None for p in report["pairs"])
    assert report["mean_ssim"] > report["mean_masked_person_ssim"]
    sheet = images.read_rgb(str(tmp_path / "contact_sheet.png"))
    assert sheet.shape[0] > 4 * 100 and sheet.shape[1] > 5 * 100


def test_vton_eval_unpaired_makes_a_sheet_without_the_real_photo(platform, examples, tmp_path):
    run = vton_eval(
        platform, tmp_path, str(examples / "avatars"), "--unpaired", str(examples / "clothes" / "shirts")
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "contact_sheet_unpaired.png").exists() and not (
        tmp_path / "contact_sheet.png"
    ).exists()


def test_the_web_page_runs_a_tryon_in_a_real_browser(platform, examples, tmp_path):
    """Headless Chromium: choose the photos, press the button, watch the stages, see the result."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    person = examples / "avatars" / "4.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(platform["url"] + "/")
        page.fill("#api-key", platform["auth"]["Authorization"].removeprefix("Bearer "))  # asked once
        page.click("#save-key")
        page.set_input_files("#person", str(person))
        page.set_input_files("#garment", str(examples / "clothes" / "shirts" / "2_front.jpg"))
        page.select_option("#category", Category.UPPER_BODY)
        page.click("#go")
        page.wait_for_selector("#result", state="visible", timeout=180_000)
        page.wait_for_function("document.getElementById('result').naturalWidth > 0", timeout=30_000)
        width = page.evaluate("document.getElementById('result').naturalWidth")
        stages = page.locator("#stages li").all_inner_texts()
        page.screenshot(path=str(tmp_path / "web.png"), full_page=True)
        browser.close()
    assert width == images.read_rgb(str(person)).shape[1]
    assert len(stages) == len(JOB_STEPS) and all("succeeded" in s for s in stages)


def test_kill_9_of_a_stage_and_of_the_s3_server_is_survived(platform, examples):
    """The supervisor restarts what was killed; jobs accepted before and after finish, none fails."""
    up = platform["up"]
    ledger = JobLedger(
        up.url,
        up.api_key,
        (examples / "avatars" / "1.png").read_bytes(),
        (examples / "clothes" / "shirts" / "1_front.jpg").read_bytes(),
    )
    for _ in range(3):
        ledger.submit()
    killed = {name: up.kill9(name) for name in ("warp", "s3")}
    for name, pid in killed.items():
        up.wait_restarted(name, pid)
    for _ in range(2):
        ledger.submit()
    ledger.follow(timeout=300)
    weed_log = up.data_dir / "s3" / "weed.log"  # what the S3 server said, should a job fail on it
    assert ledger.summary() == {"accepted": 5, "succeeded": 5, "failed_with_message": 0, "lost": 0}, (
        f"{ledger.failed()}\n{weed_log.read_text(errors='replace')[-4000:] if weed_log.is_file() else ''}"
    )
    metrics = httpx.get(up.supervisor_url, timeout=10).text
    for name in killed:
        assert f'vton_process_restarts_total{{process="{name}"}} 1.0' in metrics
        assert f"vton: {name} exited with code -9" in up.text


def test_sigterm_stops_every_process(platform):
    proc = platform["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(platform["url"] + "/healthz", timeout=2)
