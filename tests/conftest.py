"""Shared fixtures: real servers started as a user would start them (a subprocess)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: object) -> OpenAI:
        return OpenAI(base_url=self.base_url + "/v1", api_key="unused", max_retries=0,
                      **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(models: list[str], *args: str, env: dict[str, str] | None = None,
                 wait_ready: bool = True, timeout_s: float = 180) -> RunningServer:
    """`pocketserve serve` on a free port; returns once /health says every model is ready."""
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="pocketserve-", suffix=".log")
    cmd = [sys.executable, "-m", "pocketserve", "serve", "--port", str(port), *args]
    for model in models:
        cmd += ["--model", model]
    # Stored responses go to a fresh folder, never the user's data directory.
    data = {"POCKETSERVE_DATA_DIR": tempfile.mkdtemp(prefix="pocketserve-data-")}
    proc = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT,
                            env={**data, **os.environ, **(env or {})})
    os.close(fd)
    server = RunningServer(proc, port, Path(log_name))
    if wait_ready:
        wait_healthy(server, timeout_s)
    return server


def wait_healthy(server: RunningServer, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server not healthy after {timeout_s}s:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="session")
def chat_server() -> Iterator[RunningServer]:
    server = start_server(["smollm2-135m-instruct"])
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def client(chat_server: RunningServer) -> OpenAI:
    return chat_server.client()
