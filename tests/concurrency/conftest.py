"""Fixtures of the concurrency tests (see ``/work/shared/spec/concurrency-test-plan.md``).

Differences from the plan, on purpose:

* ``process_pool`` has 2 workers, not 4: the test machine has 2 cores, and more processes than
  cores only measure the scheduler. It uses the ``spawn`` start method, because forking a
  process that already runs threads (every test here does) can copy a held lock into the child.
* ``barrier`` has a 30 s timeout and ``queue`` is bounded (1000 items): no wait is unbounded.
* ``test_audio_files`` writes seeded noise with numpy and soundfile (the plan's ``auralis``
  import belongs to another project).

The live-server fixtures at the end (``served_library``, ``slow_client_server``,
``start_server``, ``short_wav``, ``long_wav``) serve ``test_async_operations.py``, which the plan
gives no fixtures for: real uvicorn servers on free loopback ports (``tests/server/live.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import queue as queue_module
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.concurrency.helpers import Excerpt, MusicFiles
from tests.concurrency.live_support import (
    SERVER_RATE,
    SHORT_SECONDS,
    ServedLibrary,
    track_ids,
    wait_first_scan,
    write_tones,
)
from tests.library.rows import add_tracks
from tests.mastering import synth
from tests.music_paths import MUSIC_DIR
from tests.server.live import LiveServer, running_server, server_settings
from tonearm.library.manager import LibraryManager

THREADS = 10
PROCESS_WORKERS = 2  # the machine has 2 cores
BARRIER_TIMEOUT_S = 30.0
QUEUE_MAXSIZE = 1000

TEST_FILE_COUNT = 10
TEST_FILE_SECONDS = 2.0
TEST_FILE_SAMPLE_RATE = 44100
EXCERPT_START_S = 2.0
EXCERPT_SECONDS = 10.0


@pytest.fixture
def thread_pool() -> Iterator[ThreadPoolExecutor]:
    """Thread pool for concurrent execution (10 workers), shut down after the test."""
    pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="test-pool")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def process_pool() -> Iterator[ProcessPoolExecutor]:
    """Process pool for parallel execution: 2 spawned workers (one per core)."""
    pool = ProcessPoolExecutor(
        max_workers=PROCESS_WORKERS, mp_context=multiprocessing.get_context("spawn")
    )
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def barrier() -> threading.Barrier:
    """Barrier for 10 threads; a wait longer than 30 s raises ``BrokenBarrierError``."""
    return threading.Barrier(THREADS, timeout=BARRIER_TIMEOUT_S)


@pytest.fixture
def lock() -> threading.Lock:
    """Lock for protecting shared resources."""
    return threading.Lock()


@pytest.fixture
def event() -> threading.Event:
    """Event for thread signalling (wait on it with a timeout)."""
    return threading.Event()


@pytest.fixture
def queue() -> queue_module.Queue[object]:
    """Thread-safe queue, bounded to 1000 items (use put/get with a timeout)."""
    return queue_module.Queue(maxsize=QUEUE_MAXSIZE)


@pytest.fixture
def test_audio_files(tmp_path: Path) -> list[Path]:
    """Ten 2 s, 44.1 kHz stereo WAV files of seeded noise (float32, different in each file)."""
    files = []
    frames = round(TEST_FILE_SECONDS * TEST_FILE_SAMPLE_RATE)
    for i in range(TEST_FILE_COUNT):
        rng = np.random.default_rng(1000 + i)
        audio = (0.1 * rng.standard_normal((2, frames))).astype(np.float32)
        path = tmp_path / f"test_{i}.wav"
        sf.write(path, audio.T, TEST_FILE_SAMPLE_RATE, subtype="FLOAT")  # (frames, channels)
        files.append(path)
    return files


@pytest.fixture(scope="session")
def music() -> MusicFiles:
    """Paths of the shared music fixtures."""
    return MusicFiles(
        root=MUSIC_DIR,
        bach_flac=MUSIC_DIR / "bach_bwv66_6.flac",
        joplin_flac=MUSIC_DIR / "joplin_maple_leaf_rag.flac",
        beethoven_mp3=MUSIC_DIR / "beethoven_opus18no1.mp3",
    )


@pytest.fixture(scope="session")
def bach_excerpt(music: MusicFiles) -> Excerpt:
    """10 s of the Bach chorale (from 2 s), float32 ``(2, frames)``, C-contiguous, read-only.

    Shared by every test of the session: it is read-only so a processor that wrote into its
    input would fail loudly instead of corrupting the other tests.
    """
    info = sf.info(music.bach_flac)
    start = round(EXCERPT_START_S * info.samplerate)
    data, rate = sf.read(
        music.bach_flac,
        start=start,
        frames=round(EXCERPT_SECONDS * info.samplerate),
        dtype="float32",
        always_2d=True,
    )
    audio = np.ascontiguousarray(data.T)
    audio.flags.writeable = False
    return Excerpt(audio=audio, sample_rate=int(rate))


# --- Library database fixtures ---
#
# ``database_url`` (``tests/conftest.py``) runs a test on SQLite and on a real throwaway
# PostgreSQL server; ``library`` is a ``LibraryManager`` on it, closed afterwards.


@pytest.fixture
def library(database_url: str) -> Iterator[LibraryManager]:
    """A ``LibraryManager`` on a fresh database of each backend (default pool and cache)."""
    with LibraryManager(database_url) as manager:
        yield manager


# --- Live servers (``test_async_operations.py``) ---
#
# ``served_library`` (module): one real uvicorn for the tests that need no special settings, with
#   a small real library (the Bach and Joplin FLACs, four 2 s noise WAVs, one 4-minute WAV for
#   jobs that must still be running when a test acts on them) plus 3000 rows without files, for
#   paging and search. Its first scan has finished; no analysis runs (``analysis_workers=0``).
# ``slow_client_server`` (module): a server with a 64-message send queue and a 1.5 s send timeout,
#   for the tests of clients that stop reading.
# ``start_server`` (function): starts servers with any settings; all stopped after the test.

LONG_SECONDS = 240.0
SEEDED_TRACKS = 3000
SHORT_NAMES = tuple(f"tone_{i}.wav" for i in range(4))


@pytest.fixture(scope="session")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of stereo noise at -24 dBFS RMS (24-bit WAV): a job of a fraction of a second."""
    path = tmp_path_factory.mktemp("short") / "short.wav"
    return synth.write(
        path, synth.noise(SERVER_RATE, SHORT_SECONDS, level_db=-24, seed=7), SERVER_RATE
    )


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 minutes of noise (16-bit WAV, 42 MB): a job that runs for seconds, long enough to act
    on while it runs (8 s of noise repeated: quick to write)."""
    audio = np.tile(
        synth.noise(SERVER_RATE, 8.0, level_db=-24, seed=8), (1, round(LONG_SECONDS / 8))
    )
    path = tmp_path_factory.mktemp("long") / "long.wav"
    return synth.write(path, audio, SERVER_RATE, subtype="PCM_16")


@pytest.fixture(scope="module")
def served_library(
    tmp_path_factory: pytest.TempPathFactory, music: MusicFiles, long_wav: Path
) -> Iterator[ServedLibrary]:
    root = tmp_path_factory.mktemp("served")
    folder = root / "music"
    folder.mkdir()
    shutil.copy(music.bach_flac, folder / music.bach_flac.name)
    shutil.copy(music.joplin_flac, folder / music.joplin_flac.name)
    write_tones(folder, SHORT_NAMES)
    try:
        os.link(long_wav, folder / "long.wav")  # 42 MB: share it when the file system can
    except OSError:
        shutil.copy(long_wav, folder / "long.wav")
    settings = server_settings(
        root,
        library_roots=(folder,),
        analysis_workers=0,
        heavy_requests_per_minute=1_000_000,  # the rate limit has its own test and server
        workers=2,
    )
    with LibraryManager(settings.database) as manager:
        add_tracks(manager.db, SEEDED_TRACKS, albums=30)
    with running_server(settings) as live:
        wait_first_scan(live)
        names = [music.bach_flac.name, music.joplin_flac.name, *SHORT_NAMES, "long.wav"]
        yield ServedLibrary(live, folder, track_ids(live, names), SEEDED_TRACKS)


@pytest.fixture(scope="module")
def slow_client_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = server_settings(
        tmp_path_factory.mktemp("slow-clients"),
        scan_on_start=False,
        ws_send_queue=64,
        ws_send_timeout_s=1.5,
    )
    with running_server(settings) as live:
        yield live


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``start(**settings)``: a running server (files under ``tmp_path``); stopped after the
    test (each within ``tests.server.live.STOP_TIMEOUT_S``)."""
    with contextlib.ExitStack() as stack:
        numbers = itertools.count()

        def start(**changes: Any) -> LiveServer:
            root = tmp_path / f"server-{next(numbers)}"
            root.mkdir()
            return stack.enter_context(running_server(server_settings(root, **changes)))

        yield start
