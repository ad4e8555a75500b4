"""`vton tryon`: options are checked by the platform's validator before anything is uploaded; --scheduler is sent.

A local HTTP server records what reaches it and answers as the API answers a refusal (422 JSON), so the tests see
exactly what the command puts on the wire.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vton_cli import cli


class _Recorder(BaseHTTPRequestHandler):
    forms: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
        )
        form = {
            part.get_param("name", header="content-disposition"): part.get_content()
            for part in message.iter_parts()
            if not part.get_filename()
        }
        self.forms.append(form)
        payload = json.dumps({"error": "recorded"}).encode()
        self.send_response(422)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    _Recorder.forms = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.forms
    server.shutdown()
    thread.join(10)


@pytest.fixture
def photos(tmp_path: Path) -> tuple[str, str]:
    person, garment = tmp_path / "person.jpg", tmp_path / "shirt.jpg"
    person.write_bytes(b"person bytes")
    garment.write_bytes(b"garment bytes")
    return str(person), str(garment)


def _tryon(
    server: str, photos: tuple[str, str], *options: str, category: str | None = "upper_body"
) -> tuple[int, str]:
    err = io.StringIO()
    chosen = ["--category", category] if category else []
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(["tryon", *photos, *chosen, "-o", "out.png", "--server", server, *options])
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--steps", "500"], "--steps: steps 500 is out of range; it must be within 1..200"),
        (
            ["--guidance-scale", "31"],
            "--guidance-scale: guidance_scale 31 is out of range; it must be within 0..30",
        ),
        (["--seed", "-1"], "--seed: seed -1 is out of range"),
        (
            ["--scheduler", "euler"],
            "--scheduler: unknown scheduler 'euler'; choose one of: ddim, dpm-solver++",
        ),
    ],
    ids=["steps", "guidance", "seed", "scheduler"],
)
def test_an_option_out_of_range_is_named_and_nothing_is_uploaded(recorder, photos, options, message):
    server, forms = recorder
    code, err = _tryon(server, photos, *options)
    assert code == 2
    assert err.startswith("vton tryon: ") and message in err
    assert forms == [], "the photos were uploaded before the options were checked"


def test_the_chosen_options_and_scheduler_reach_the_api(recorder, photos):
    server, forms = recorder
    code, err = _tryon(server, photos, "--steps", "25", "--scheduler", "dpm-solver++", "--seed", "7")
    assert code == 1 and "HTTP 422: recorded" in err
    assert forms == [{"category": "upper_body", "seed": "7", "steps": "25", "scheduler": "dpm-solver++"}]


def test_options_left_out_are_not_sent(recorder, photos):
    server, forms = recorder
    _tryon(server, photos)
    assert forms == [{"category": "upper_body"}], "the server chooses the seed and the backend its defaults"


def test_without_a_category_the_options_are_checked_and_the_api_infers_it(recorder, photos):
    server, forms = recorder
    code, err = _tryon(server, photos, "--steps", "500", category=None)
    assert code == 2 and "--steps: steps 500 is out of range" in err and forms == []
    code, err = _tryon(server, photos, "--scheduler", "ddim", category=None)
    assert code == 1 and forms == [{"scheduler": "ddim"}], "no category sent: the API infers it"
