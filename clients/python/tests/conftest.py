"""A real warmpool for the tests: the binary named by WARMPOOL_BIN, started
with `warmpool serve` on 127.0.0.1:0, the process runtime (the bundled sample
app), a temp data dir and an API token."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, TypeVar

import pytest

from warmpool import Client

T = TypeVar("T")

POOL_LABELS = "runtime=sample,tier=test"


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get("WARMPOOL_BIN")
    if not path:
        raise pytest.UsageError(
            "WARMPOOL_BIN is not set: point it at a warmpool binary, e.g. "
            "WARMPOOL_BIN=target/release/warmpool (or run clients/python/run-tests.sh BIN)"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise pytest.UsageError(f"WARMPOOL_BIN={path!r} is not an executable file")


def eventually(what: str, check: Callable[[], Optional[T]], within: float = 30.0) -> T:
    """Polls ``check`` until it returns something other than None or False,
    and returns that; fails naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Optional[T] = None
    while True:
        last = check()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        time.sleep(0.05)


class Warmpool:
    """A running `warmpool serve`."""

    def __init__(self, binary: str, data_dir: Path, extra: Dict[str, str]) -> None:
        self.data_dir = data_dir
        self.token = extra.get("WARMPOOL_API_TOKEN")
        self.log_path = data_dir / "warmpool.log"
        env = {
            # A clean environment: nothing of the caller's WARMPOOL_* leaks in.
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "RUST_LOG": "warn",
            "NO_COLOR": "1",
            "WARMPOOL_LISTEN": "127.0.0.1:0",
            "WARMPOOL_DATA_DIR": str(data_dir),
            "WARMPOOL_RUNTIME": "process",
            "POOL_TARGET_INSTANCES": "3",
            "POOL_BATCH_SIZE": "10",
            "POOL_BATCH_SPACING_IN_SECONDS": "0",
            "WARMPOOL_START_TIMEOUT_SECONDS": "20",
            "WARMPOOL_CLAIM_TIMEOUT_SECONDS": "20",
            "WARMPOOL_STOP_GRACE_SECONDS": "2",
            "WARMPOOL_RECONCILE_INTERVAL_SECONDS": "1",
            "WARMPOOL_MAX_LIFETIME_SECONDS": "3600",
            **extra,
        }
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self.base_url = self._read_address(within=30.0)
        # warmpool prints one line on stdout; drain anything after it anyway.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]

    def _read_address(self, within: float) -> str:
        line: list = []
        t = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(within)
        text = line[0].decode().strip() if line else ""
        prefix = "warmpool listening on "
        if not text.startswith(prefix):
            self.stop()
            pytest.fail(
                f"warmpool did not say where it listens within {within}s "
                f"(first line {text!r}, exit {self.proc.poll()}); its log:\n{self.log()}"
            )
        return text[len(prefix):]

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def client(self, token: Optional[str] = None) -> Client:
        return Client(self.base_url, token=token, timeout=60.0)

    def stop(self) -> None:
        """SIGTERM (so that its containers stop with it), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warmpool]:
    data_dir = tmp_path_factory.mktemp("warmpool-data")
    wp = Warmpool(
        os.environ["WARMPOOL_BIN"],
        data_dir,
        {
            "WARMPOOL_API_TOKEN": "py-" + secrets.token_hex(16),
            "WARMPOOL_POOL_LABELS": POOL_LABELS,
        },
    )
    try:
        c = wp.client(wp.token)
        eventually("GET /readyz to answer 200", c.readyz, within=30.0)
        eventually("a ready container", lambda: c.pools().ready() >= 1, within=60.0)
        yield wp
    finally:
        wp.stop()


@pytest.fixture()
def client(server: Warmpool) -> Client:
    """A client with the API token, once the pool has a ready container."""
    c = server.client(server.token)
    c.wait_ready(1, timeout=60.0)
    return c


@pytest.fixture()
def unique() -> str:
    """A label value no other test uses."""
    return "t" + secrets.token_hex(6)
