"""What a server is started with: :class:`ServerSettings` (frozen; the CLI and tests build it)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tonearm.errors import ParameterError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "TOKEN_ENVIRONMENT_VARIABLE", "ServerSettings"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENVIRONMENT_VARIABLE = "TONEARM_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseModel):
    """Everything a running server needs to know (see ``tonearm serve --help``)."""

    model_config = ConfigDict(frozen=True)

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    database: str
    """Library database file or URL."""
    library_roots: tuple[Path, ...] = ()
    """Folders scanned on first start; the only places audio is served from."""
    data_dir: Path
    """Uploads and job outputs live here (``uploads/``, ``jobs/``)."""
    token: str | None = None
    """Required on every request and socket when set (and to bind beyond loopback)."""
    allowed_origins: tuple[str, ...] = ()
    """Origins a browser may connect from, besides the server's own address."""
    workers: int = Field(default=2, ge=1, le=256)
    executor: Literal["thread", "process", "dask"] = "thread"
    memory_budget_mib: int = Field(default=2048, ge=64)
    max_upload_bytes: int = Field(default=512 * 2**20, ge=1)
    on_shutdown: Literal["finish", "cancel"] = "cancel"
    """Running jobs on SIGTERM: let them finish (within the grace period) or cancel them."""
    shutdown_grace_s: float = Field(default=8.0, gt=0)
    heavy_requests_per_minute: int = Field(default=30, ge=1)
    """Rate limit per client of the upload, master and scan endpoints."""
    ws_messages_per_second: float = Field(default=20.0, gt=0)
    ws_burst: int = Field(default=40, ge=1)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_send_queue: int = Field(default=256, ge=1)
    ws_send_timeout_s: float = Field(default=5.0, gt=0)
    ws_ping_interval_s: float = Field(default=30.0, gt=0)
    ws_pong_timeout_s: float = Field(default=10.0, gt=0)
    scan_on_start: bool = True
    analysis_workers: int = Field(default=1, ge=0, le=64)
    """Threads analysing new tracks after a scan (0: no analysis)."""

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> ServerSettings:
        if not is_loopback(self.host) and not self.token:
            raise ParameterError(
                f"binding to {self.host} needs a token: --token or {TOKEN_ENVIRONMENT_VARIABLE}"
            )
        return self

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
