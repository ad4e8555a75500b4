"""Catalogs through a running platform (vton_cli.platform, as `vton up` starts it), with the real embedded stages:
garments dropped into the incoming prefix, `vton batch` on the command line, and the web page's batch view in
headless Chromium. One platform serves the whole module; the orchestrator lists incoming prefixes every second.

Set VTON_WRITE_DOCS=1 to have the batch view's test write its screenshot to docs/batch-view.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port_block
from vton.runtime import images
from vton.runtime.vocab import STAGES
from vton_cli.platform import Platform, PlatformConfig
from vton_cli.s3server import free_s3_port

REPO = Path(__file__).resolve().parents[2]
POLL_S = 1.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    base = free_port_block(20)
    config = PlatformConfig(
        data_dir=tmp_path_factory.mktemp("platform"),
        http_port=base,
        grpc_base_port=base + 1,
        metrics_base_port=base + 10,
        s3_port=free_s3_port(),
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VTON_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
        env.setenv("VTON_INCOMING_POLL_S", str(POLL_S))
        with Platform(config, log=lambda *_: None) as running:
            yield running


@pytest.fixture(scope="module")
def api(platform):
    with httpx.Client(
        base_url=platform.config.api_url,
        headers={"Authorization": f"Bearer {platform.api_key}"},
        timeout=60,
    ) as client:
        yield client


def _put(api: httpx.Client, key: str, path: Path) -> None:
    """What `curl -T FILE .../v1/objects/KEY` does."""
    response = api.put(f"/v1/objects/{key}", content=path.read_bytes())
    assert response.status_code == 201, response.text


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def _finished(api: httpx.Client, batch_id: str, timeout: float = 300) -> dict:
    return _until(
        lambda: (b := api.get(f"/v1/batches/{batch_id}").json())["status"] == "finished" and b,
        timeout,
        f"batch {batch_id} did not finish",
    )


def _stage_calls(platform: Platform) -> dict[str, float]:
    """Successful calls each stage has answered so far, by method, from the stages' own /metrics."""
    calls: dict[str, float] = {}
    for stage in STAGES:
        text = httpx.get(f"http://127.0.0.1:{platform.config.metrics_port(stage)}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "vton_grpc_requests_total" and sample.labels["code"] == "OK":
                    calls[sample.labels["method"]] = calls.get(sample.labels["method"], 0) + sample.value
    return calls


def test_garments_dropped_into_the_incoming_prefix_are_tried_on_every_model_once(platform, api, examples):
    for i in (1, 2, 3):
        _put(api, f"models/model-{i}.png", examples / "avatars" / f"{i}.png")
    dropped = {
        "incoming/garments/upper_body/shirt-2.jpg": examples / "clothes" / "shirts" / "2_front.jpg",
        "incoming/garments/lower_body/pants-2.jpg": examples / "clothes" / "pants" / "2_front.jpg",
        "incoming/garments/upper_body/jacket-3.jpg": examples / "clothes" / "jackets" / "3_front.jpg",
    }
    for key, path in dropped.items():
        _put(api, key, path)
    pickups = _until(
        lambda: len(seen := api.get("/v1/incoming").json()["recent"]) >= 3 and seen,
        30,
        "the three garments were not picked up",
    )
    assert sorted(p["key"] for p in pickups) == sorted(dropped)
    batches = [_finished(api, p["batch"]) for p in pickups]
    assert all(b["counts"]["succeeded"] == 3 and b["source"] == "incoming" for b in batches), batches

    listing = api.get("/v1/objects", params={"prefix": "results/", "limit": 100}).json()["objects"]
    results = {o["key"]: o for o in listing}
    expected = {
        f"results/{garment}/model-{i}.png"
        for garment in ("upper_body/shirt-2", "lower_body/pants-2", "upper_body/jacket-3")
        for i in (1, 2, 3)
    }
    assert expected <= set(results), sorted(results)
    assert len([k for k in results if k.endswith(".png")]) == 9
    for garment in ("upper_body/shirt-2", "lower_body/pants-2", "upper_body/jacket-3"):
        manifest = json.loads(
            httpx.get(results[f"results/{garment}/manifest.json"]["url"], timeout=10).content
        )
        assert [(r["person"], r["status"]) for r in manifest["rows"]] == [
            (f"model-{i}.png", "succeeded") for i in (1, 2, 3)
        ]
        assert {r["result_key"] for r in manifest["rows"]} == {
            f"results/{garment}/model-{i}.png" for i in (1, 2, 3)
        }
        assert f"results/{garment}/manifest.csv" in results
    result = images.decode_rgb(
        httpx.get(results["results/lower_body/pants-2/model-1.png"]["url"], timeout=10).content
    )
    assert result.shape == images.read_rgb(str(examples / "avatars" / "1.png")).shape

    # an orchestrator restart lists the same prefix again and processes nothing twice
    platform.restart("orchestrator")
    time.sleep(4 * POLL_S)
    after = api.get("/v1/incoming").json()["recent"]
    assert sorted((p["key"], p["batch"]) for p in after) == sorted((p["key"], p["batch"]) for p in pickups)
    again = {
        o["key"]: o
        for o in api.get("/v1/objects", params={"prefix": "results/", "limit": 100}).json()["objects"]
    }
    assert {k: o["last_modified"] for k, o in again.items()} == {
        k: o["last_modified"] for k, o in results.items()
    }


def test_vton_batch_downloads_every_result_and_the_manifest_analysing_each_person_once(
    platform, examples, tmp_path
):
    people, garments = tmp_path / "people", tmp_path / "garments"
    people.mkdir()
    for i in (1, 2):
        shutil.copy(examples / "avatars" / f"{i}.png", people / f"model-{i}.png")
    for category, photo, name in (
        ("upper_body", "shirts/1_front.jpg", "shirt-1.jpg"),
        ("upper_body", "jackets/1_front.jpg", "jacket-1.jpg"),
        ("lower_body", "pants/1_front.jpg", "pants-1.jpg"),
    ):
        (garments / category).mkdir(parents=True, exist_ok=True)
        shutil.copy(examples / "clothes" / photo, garments / category / name)
    before = _stage_calls(platform)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "vton_cli.cli", "batch", str(people), str(garments), "-o", str(out)]
        + ["--server", platform.config.api_url],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "VTON_API_KEY": platform.api_key},
    )
    after = _stage_calls(platform)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 garments x 2 people" in run.stdout and "6/6" in run.stdout, run.stdout
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(
        [f"{g}/model-{i}.png" for g in ("shirt-1", "jacket-1", "pants-1") for i in (1, 2)]
        + ["manifest.json", "manifest.csv"]
    )
    rows = json.loads((out / "manifest.json").read_text())["rows"]
    assert len(rows) == 6 and {r["status"] for r in rows} == {"succeeded"}
    assert {r["category"] for r in rows if r["garment"] == "pants-1.jpg"} == {"lower_body"}
    assert (
        images.read_rgb(str(out / "pants-1" / "model-2.png")).shape
        == images.read_rgb(str(people / "model-2.png")).shape
    )
    # two people: their pose, densepose and parsing twice in all; the garment steps six times
    calls = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    assert (calls["EstimatePose"], calls["EstimateDensePose"], calls["Parse"]) == (2, 2, 2)
    assert (calls["CreateAgnosticMask"], calls["WarpGarment"], calls["TryOn"]) == (6, 6, 6)


def test_vton_batch_refuses_a_folder_without_photos(platform, tmp_path):
    (tmp_path / "people").mkdir()
    (tmp_path / "garments").mkdir()
    (tmp_path / "people" / "notes.txt").write_text("no photos here")
    run = subprocess.run(
        [sys.executable, "-m", "vton_cli.cli", "batch", str(tmp_path / "people"), str(tmp_path / "garments")]
        + ["-o", str(tmp_path / "out"), "--server", platform.config.api_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 2 and f"no photos (.png, .jpg, .webp) in {tmp_path / 'people'}" in run.stderr


def test_the_web_page_shows_a_batch_filling_in_as_its_jobs_finish(platform, examples, tmp_path):
    """Headless Chromium: two people, three garments; the grid's six cells end with the six results."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    people, garments = [], []
    for i in (3, 4):  # named for the grid (the example files share names across folders)
        people.append(shutil.copy(examples / "avatars" / f"{i}.png", tmp_path / f"model-{i}.png"))
    for photo, name in (
        ("shirts/3_front.jpg", "tee-white"),
        ("shirts/4_front.jpg", "tee-black"),
        ("jackets/4_front.jpg", "jacket-leather"),
    ):
        garments.append(shutil.copy(examples / "clothes" / photo, tmp_path / f"{name}.jpg"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(platform.config.api_url + "/")
        page.fill("#api-key", platform.api_key)
        page.click("#save-key")
        page.click("#tab-batch")
        page.set_input_files("#batch-people", [str(path) for path in people])
        page.set_input_files("#batch-garments", [str(path) for path in garments])
        page.select_option("#batch-category", "upper_body")
        page.click("#batch-go")
        page.wait_for_selector("#batch-grid td.cell", timeout=30_000)
        seen_running = page.evaluate("document.querySelectorAll('#batch-grid td.succeeded').length") < 6
        page.wait_for_selector("#batch-manifest", timeout=300_000)
        page.wait_for_function(
            "[...document.querySelectorAll('#batch-grid td.succeeded img')].every(i => i.naturalWidth > 0)",
            timeout=30_000,
        )
        cells = page.locator("#batch-grid td.cell").evaluate_all("cells => cells.map(c => c.className)")
        widths = page.locator("#batch-grid td img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        status = page.inner_text("#batch-status")
        names = page.locator("#batch-grid th .name").all_inner_texts()
        page.screenshot(path=str(tmp_path / "batch-view.png"), full_page=True)
        browser.close()
    assert seen_running, "the grid was shown before the batch finished"
    assert cells == ["cell succeeded"] * 6
    assert widths == [images.read_rgb(str(people[0])).shape[1]] * 6
    assert "finished, 6 of 6 try-ons done (0 failed)" in status
    assert names == ["tee-white.jpg", "tee-black.jpg", "jacket-leather.jpg", "model-3.png", "model-4.png"]
    if os.environ.get("VTON_WRITE_DOCS") == "1":
        shutil.copy(tmp_path / "batch-view.png", REPO / "docs" / "batch-view.png")
