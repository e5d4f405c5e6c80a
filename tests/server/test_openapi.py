"""schemathesis against the running server's ``/openapi.json``: no request it generates gets a
server error, every response fits the schema (body, content type, headers), and every status
code the server answers is documented.

One ``schemathesis run`` (its CLI, in a subprocess: every phase, the coverage and stateful ones
included) fuzzes a real uvicorn serving a one-track library; the tests read its JSON report. The
run is seeded and bounded (``--max-examples``), so it is repeatable and takes about 20 s. The
rate limit is lifted (fuzzing would otherwise meet 429s) and uploads are capped small.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.music_paths import MUSIC_DIR
from tests.server.live import LiveServer, running_server, server_settings

SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli"]
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "status_code_conformance",
)
MAX_EXAMPLES = 7
"""Per operation and phase; the coverage phase adds its own (bounded) cases."""
SEED = 20260
RUN_TIMEOUT_S = 240
SCAN_TIMEOUT_S = 60.0
SERVER_ERRORS = {"ST101", "ST102"}
"""A 5xx; a 5xx for an undeclared ``Content-Type``."""
SCHEMA_MISMATCHES = {"ST104", "ST105", "ST106", "ST107", "ST108", "ST109", "ST110", "ST111"}
"""Content type missing, undocumented or malformed; a required header missing; a body or header
the schema rejects; a body its content type cannot parse; an unknown discriminator."""
UNDOCUMENTED_STATUS = {"ST103"}


@dataclass(frozen=True)
class Fuzzed:
    """What one schemathesis run found: its JSON report and its text output (which has every
    failing request as a ``curl`` line)."""

    report: dict[str, Any]
    output: str
    operations: int
    """Operations in the server's ``/openapi.json``."""

    def failures(self, codes: set[str]) -> list[dict[str, Any]]:
        return [failure for failure in self.report["failures"] if failure["code"] in codes]

    def explain(self, codes: set[str]) -> str:
        """The failures with ``codes``, then each failing case that shows one (from the text
        output: the operation, what came back, the ``curl`` line)."""
        found = self.failures(codes)
        lines = [f"{f['code']} {f['title']}: {', '.join(f['operations'])}" for f in found]
        for section in re.split(r"\n(?=_{3,} )", self.output):
            heading, *cases = re.split(r"\n(?=\d+\. Test Case ID)", section)
            shown = [case for case in cases if any(f"- {code} " in case for code in codes)]
            if shown:
                lines += ["", heading.strip(), *shown]
        return "\n".join(lines)


def _operations(schema: dict[str, Any]) -> int:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return sum(len(methods & set(item)) for item in schema["paths"].values())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server over one track (scanned and analysed), with the rate limit lifted."""
    root = tmp_path_factory.mktemp("openapi")
    music = root / "music"
    music.mkdir()
    shutil.copy(MUSIC_DIR / "bach_bwv66_6.flac", music / "bach_bwv66_6.flac")
    settings = server_settings(
        root,
        library_roots=(music,),
        heavy_requests_per_minute=1_000_000,
        max_upload_bytes=1_000_000,
        workers=1,
    )
    with running_server(settings) as server, httpx.Client(base_url=server.url) as client:
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while (state := client.get("/api/scan").json()["state"]) != "done":
            assert state not in ("failed", "cancelled"), f"the scan ended {state}"
            assert time.monotonic() < deadline, "the scan did not finish in time"
            time.sleep(0.05)
        assert client.get("/api/tracks").json()["total"] == 1
        yield server


@pytest.fixture(scope="module")
def fuzzed(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Fuzzed:
    folder = tmp_path_factory.mktemp("schemathesis")  # its caches go here, not in the checkout
    report_path = folder / "report.json"
    command = [
        *SCHEMATHESIS,
        "run",
        f"{live.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--continue-on-failure",  # one failure must not hide another of the same operation
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report_path),
    ]
    done = subprocess.run(
        command,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert report_path.is_file(), done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    schema = httpx.get(f"{live.url}/openapi.json").json()
    return Fuzzed(report, done.stdout + done.stderr, _operations(schema))


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_every_operation_was_fuzzed(fuzzed: Fuzzed) -> None:
    report = fuzzed.report
    assert report["complete"] is True, fuzzed.output
    assert report["operations"]["tested"] == fuzzed.operations > 30, report["operations"]
    assert report["operations"]["errored"] == 0, fuzzed.output
    assert report["errors"] == [], fuzzed.output
    known = SERVER_ERRORS | SCHEMA_MISMATCHES | UNDOCUMENTED_STATUS
    assert {failure["code"] for failure in report["failures"]} <= known, report["failures"]
    assert report["warnings"]["rate_limited"] == [], "the rate limit got in the way"
    assert report["test_cases"]["generated"] >= MAX_EXAMPLES * fuzzed.operations
    assert {name for name, phase in report["phases"].items() if phase["status"] != "skip"} >= {
        "coverage",
        "fuzzing",
        "stateful",
    }


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_no_request_gets_a_server_error(fuzzed: Fuzzed) -> None:
    assert fuzzed.failures(SERVER_ERRORS) == [], fuzzed.explain(SERVER_ERRORS)


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_every_response_fits_the_schema(fuzzed: Fuzzed) -> None:
    assert fuzzed.failures(SCHEMA_MISMATCHES) == [], fuzzed.explain(SCHEMA_MISMATCHES)


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_every_status_code_is_documented(fuzzed: Fuzzed) -> None:
    assert fuzzed.failures(UNDOCUMENTED_STATUS) == [], fuzzed.explain(UNDOCUMENTED_STATUS)


# --- what the fuzzing found, pinned ---------------------------------------------------------


BEYOND_AN_ID = [2**31, 2**63 - 1, 2**63, 10**30, -(10**30)]
"""Ids no row can have: past PostgreSQL's INTEGER (the id columns' type), SQLite's largest
integer and just past it, far past both, far below."""
CLOSE = {"Connection": "close"}
REFUSED = (400, 404, 422)
"""A bad request, no such row, or an invalid parameter."""
EMPTY_OR_REFUSED = (200, *REFUSED)
"""A listing filtered by an id no row has may also be an empty page."""


@pytest.mark.timeout(120)
def test_ids_beyond_the_database_range_never_reach_it(tmp_path: Path, database_url: str) -> None:
    """An id the database cannot even compare is refused (or finds nothing), never a 500."""
    settings = server_settings(tmp_path, database=database_url, scan_on_start=False)
    with (
        running_server(settings) as server,
        httpx.Client(base_url=server.url, timeout=30.0) as http,
    ):
        playlist = http.post("/api/playlists", json={"name": "mine"})
        assert playlist.status_code == 201, playlist.text
        mine = playlist.json()["id"]
        wrong: list[str] = []
        for big in BEYOND_AN_ID:
            requests: list[tuple[str, str, dict[str, Any] | None, tuple[int, ...]]] = [
                ("GET", f"/api/tracks/{big}", None, REFUSED),
                ("GET", f"/api/tracks/{big}/stream", None, REFUSED),
                ("GET", f"/api/tracks/{big}/mastered", None, REFUSED),
                ("POST", f"/api/tracks/{big}/plan", None, REFUSED),
                ("POST", f"/api/tracks/{big}/plays", None, REFUSED),
                ("PUT", f"/api/tracks/{big}/favourite", {"favourite": True}, REFUSED),
                ("GET", f"/api/tracks/{big}/similar", None, REFUSED),
                ("GET", f"/api/albums/{big}", None, REFUSED),
                ("GET", f"/api/albums/{big}/cover", None, REFUSED),
                ("GET", f"/api/playlists/{big}", None, REFUSED),
                ("PATCH", f"/api/playlists/{big}", {"name": "x"}, REFUSED),
                ("DELETE", f"/api/playlists/{big}", None, REFUSED),
                ("POST", "/api/jobs", {"track_id": big}, REFUSED),
                ("POST", "/api/playlists", {"name": f"p{big}", "track_ids": [big]}, REFUSED),
                ("PATCH", f"/api/playlists/{mine}", {"append": [big]}, REFUSED),
                ("PATCH", f"/api/playlists/{mine}", {"track_ids": [big]}, REFUSED),
                ("GET", f"/api/tracks?album_id={big}", None, EMPTY_OR_REFUSED),
                ("GET", f"/api/tracks?artist_id={big}", None, EMPTY_OR_REFUSED),
                ("GET", f"/api/tracks?genre_id={big}&q=x", None, EMPTY_OR_REFUSED),
            ]
            for method, path, body, allowed in requests:
                try:  # a new connection each: a 500 would leave a dead one in the pool
                    response = http.request(method, path, json=body, headers=CLOSE)
                except httpx.TransportError as exc:
                    wrong.append(f"{method} {path}: {exc!r}")
                    continue
                if response.status_code not in allowed:
                    wrong.append(f"{method} {path}: {response.status_code} {response.text[:80]}")
                elif response.status_code == 200:
                    assert response.json()["items"] == [], path
                else:
                    assert "detail" in response.json(), path
        assert wrong == [], "\n".join(wrong)
        assert http.get(f"/api/playlists/{mine}").json()["track_ids"] == []
