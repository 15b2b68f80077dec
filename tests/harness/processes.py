"""Starting and stopping the real services the tests use: free ports, logs, readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceFailed(RuntimeError):
    """A service did not start; the message carries its command and the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 the kernel says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class ManagedProcess:
    """A background process with its output in a log file, stopped by :meth:`stop`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.command = list(command)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    def wait_until(self, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll ``ready`` until it is true; fail with the log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise ServiceFailed(self._explain(f"exited with status {self.process.returncode}"))
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceFailed(self._explain(f"not ready after {timeout:.0f}s"))
            time.sleep(0.1)

    def _explain(self, what: str) -> str:
        command = " ".join(self.command)
        return f"{self.name} {what}\ncommand: {command}\nlog {self.log_path}:\n{tail(self.log_path)}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
