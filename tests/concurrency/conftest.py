"""Fixtures of the concurrency tests (see ``/work/shared/spec/concurrency-test-plan.md``).

Differences from the plan, on purpose:

* ``process_pool`` has 2 workers, not 4: the test machine has 2 cores, and more processes than
  cores only measure the scheduler. It uses the ``spawn`` start method, because forking a
  process that already runs threads (every test here does) can copy a held lock into the child.
* ``barrier`` has a 30 s timeout and ``queue`` is bounded (1000 items): no wait is unbounded.
* ``test_audio_files`` writes seeded noise with numpy and soundfile (the plan's ``auralis``
  import belongs to another project).
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.concurrency.helpers import Excerpt, MusicFiles
from tests.music_paths import MUSIC_DIR
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
