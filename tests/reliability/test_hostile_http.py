"""Hostile files through the HTTP API, served as deployed (`python -m orchestrator` on a real S3 server), while
a concurrent /healthz probe measures how long the event loop keeps a client waiting.

Every file gets its answer (202, or a 4xx JSON naming the problem and the size sent), none a 5xx, none hangs,
and the probe never waits more than 100 ms (1 s on a machine busier than its CPUs). The long tier
(`reliability`) adds the bombs that decode to tens of megapixels, four at a time, and runs every accepted file
through the real stages.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.reliability.hostile_corpus import (
    ACCEPTED,
    ApiServer,
    HealthProbe,
    Hostile,
    corpus,
    exif_block,
    jpeg,
    photo,
    png,
    webp_bomb,
)
from tests.stages import stage_servers
from vton.runtime import images

# The event loop may keep a /healthz probe waiting this long at most, whatever the uploads (on a machine with a
# core for each runnable thread; HealthProbe.check allows a busier one more).
LOOP_BUDGET_S = 0.1
# No request may take longer than this: past it the test counts a hang.
REQUEST_TIMEOUT_S = 120
GOOD = png(photo(seed=1))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with ApiServer(tmp_path_factory.mktemp("hostile-api")) as server:
        yield server


def _post(
    client: httpx.Client, hostile: Hostile, as_garment: bool = False, wait: bool = False
) -> httpx.Response:
    sent = (hostile.filename, hostile.data, hostile.content_type)
    good = ("good.png", GOOD, "image/png")
    files = {"person": good, "garment": sent} if as_garment else {"person": sent, "garment": good}
    return client.post(
        "/v1/tryon" + ("?wait=true" if wait else ""),
        files=files,
        data={"category": "upper_body"},
        timeout=REQUEST_TIMEOUT_S,
    )


def _send_all(api: ApiServer, files: tuple[Hostile, ...], concurrency: int) -> list[str]:
    """Each file as the person and as the garment, `concurrency` at a time; the problems found, in words."""

    def one(job: tuple[Hostile, bool]) -> str | None:
        hostile, as_garment = job
        role = "garment" if as_garment else "person"
        with api.client() as client:
            try:
                response = _post(client, hostile, as_garment)
            except httpx.TimeoutException:
                return f"{hostile.name} as {role}: no answer in {REQUEST_TIMEOUT_S} s (a hang)"
        if response.status_code != hostile.status:
            return f"{hostile.name} as {role}: {response.status_code} {response.text[:200]}, not {hostile.status}"
        if hostile.status != ACCEPTED:
            error = response.json()["error"]
            if not error.startswith(f"the {role} image") or hostile.needle.lower() not in error.lower():
                return f"{hostile.name} as {role}: {error!r} does not name the {role} and {hostile.needle!r}"
        return None

    jobs = [(hostile, as_garment) for hostile in files for as_garment in (False, True)]
    with ThreadPoolExecutor(concurrency) as pool:
        return [problem for problem in pool.map(one, jobs) if problem]


def test_every_hostile_file_gets_its_answer_while_the_api_keeps_answering(api):
    files = corpus()
    assert len(files) >= 40
    with HealthProbe(api.url) as probe:
        problems = _send_all(api, files, concurrency=2)
    assert problems == [], "\n".join(problems)
    print(
        f"\n{len(files) * 2} hostile uploads (each file as person and as garment); /healthz worst "
        f"{probe.worst * 1000:.0f} ms over {len(probe.latencies)} probes"
    )
    probe.check(LOOP_BUDGET_S)


def test_four_webp_bombs_at_once_are_refused_at_once_naming_the_declared_size(api):
    """The issue's case: a 10 kB WebP that declares (and would really decode to) 16383x16383."""
    bomb = Hostile("webp-bomb", webp_bomb(16383, 16383, pad_to=10_000), 413, filename="b.webp")
    assert 9_000 < len(bomb.data) < 11_000

    def attack(_: int) -> tuple[httpx.Response, float]:
        with api.client() as client:
            started = time.perf_counter()
            return _post(client, bomb), time.perf_counter() - started

    with HealthProbe(api.url) as probe, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(attack, range(4)))
    for response, seconds in answers:
        assert response.status_code == 413
        body = response.json()
        assert "16383x16383 (268.4 megapixels); the limit is 40 megapixels" in body["error"]
        assert body["detail"] == {"field": "person", "width": 16383, "height": 16383}
        assert seconds < 1.0, f"refused after {seconds:.2f} s"
    probe.check(LOOP_BUDGET_S)


def test_jpeg_headers_followed_by_24_MB_of_zeros_decode_off_the_event_loop(api):
    (zeros,) = [h for h in corpus() if h.name == "jpeg-header-then-24MB-of-zeros"]

    def attack(_: int) -> int:
        with api.client() as client:
            return _post(client, zeros).status_code

    with HealthProbe(api.url) as probe, ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(attack, range(2)))
    assert statuses == [zeros.status] * 2
    probe.check(LOOP_BUDGET_S)


def test_a_40x1000000_png_is_refused_naming_40x1000000(api):
    (sliver,) = [h for h in corpus() if h.name == "png-40x1000000"]
    with api.client() as client:
        response = _post(client, sliver)
    assert response.status_code == 400
    assert response.json()["error"].startswith("the person image: the image is 40x1000000;")
    assert response.json()["detail"] == {"field": "person", "width": 40, "height": 1000000}


# --- the long tier ------------------------------------------------------------------------------------------


@pytest.mark.reliability
def test_bombs_that_decode_to_tens_of_megapixels_four_at_a_time_never_block_the_event_loop(api):
    files = tuple(h for h in corpus(heavy=True) if h.heavy)
    rss_before = api.rss_bytes
    with HealthProbe(api.url) as probe:
        problems = _send_all(api, files * 2, concurrency=4)
    assert problems == [], "\n".join(problems)
    print(
        f"\n{len(files) * 4} bomb uploads; /healthz worst {probe.worst * 1000:.0f} ms over "
        f"{len(probe.latencies)} probes; orchestrator RSS {rss_before / 1e6:.0f} -> {api.rss_bytes / 1e6:.0f} MB"
    )
    probe.check(LOOP_BUDGET_S)


@pytest.fixture(scope="module")
def stages():
    with stage_servers() as addresses:
        yield addresses


@pytest.fixture(scope="module")
def platform(tmp_path_factory, stages):
    with ApiServer(tmp_path_factory.mktemp("hostile-platform"), stages=stages, workers=1) as server:
        yield server


def test_a_photo_stored_sideways_comes_back_upright(platform, examples):
    """A phone photo: stored a quarter turn counter-clockwise, shown upright through EXIF orientation 6."""
    upright = images.read_rgb(str(examples / "avatars" / "1.png"))
    sideways = jpeg(np.ascontiguousarray(np.rot90(upright, 1)), exif=exif_block(6), quality=95)
    garment = (examples / "clothes" / "shirts" / "1_front.jpg").read_bytes()
    with platform.client(timeout=REQUEST_TIMEOUT_S) as client:
        response = client.post(
            "/v1/tryon?wait=true",
            files={
                "person": ("phone.jpg", sideways, "image/jpeg"),
                "garment": ("g.jpg", garment, "image/jpeg"),
            },
            data={"category": "upper_body"},
        )
        assert response.status_code == 200, response.text
        job = response.json()
        result = images.decode_rgb(client.get(job["result_url"]).content)
        masked = images.decode_rgb(client.get(job["artifacts"]["masked_person"]).content)
    assert result.shape == upright.shape, "the result is upright, at the photo's size"
    assert masked.shape == upright.shape, "the stages saw it upright"
    head = np.s_[: upright.shape[0] // 8]  # above the garment region the result is the user's photo
    assert np.abs(result[head].astype(int) - upright[head]).mean() < 4


@pytest.mark.reliability
def test_every_file_the_api_accepts_runs_through_the_stages_without_a_stage_refusing_it(platform):
    """What the API accepts, no stage refuses: a job ends succeeded, or with no person found, never with
    invalid input (a check the API missed) and never with a 5xx."""
    accepted = [h for h in corpus(heavy=True) if h.status == ACCEPTED]
    outcomes = {}
    with platform.client() as client:
        for hostile in accepted:
            for as_garment in (False, True):
                response = _post(client, hostile, as_garment, wait=True)
                role = "garment" if as_garment else "person"
                outcomes[f"{hostile.name} as {role}"] = (response.status_code, response.json().get("error"))
    wrong = {name: outcome for name, outcome in outcomes.items() if outcome[0] not in (200, 422)}
    assert wrong == {}
    assert all("no person found" in (error or "") for status, error in outcomes.values() if status == 422)
