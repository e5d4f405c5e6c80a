"""Starting and joining test threads, every join bounded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

JOIN_S = 5.0


def start(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(JOIN_S)
        assert not thread.is_alive(), "a thread did not finish in time"
