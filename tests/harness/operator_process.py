"""``barman-cloud-plugin operator`` as a real process, with its JSON log in a file."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.processes import free_port, tail

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
SIDECAR_IMAGE = "registry.example.com/barman-cloud-plugin:0.1.0"
T = TypeVar("T")


class OperatorProcess:
    """One replica: unix-socket CNPG-I endpoint in its own directory, probes on a free port."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        *,
        name: str,
        leader_elect: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.extra_env = env or {}
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = kubeconfig
        self.leader_elect = leader_elect
        self.health_port = free_port()
        self.log_path = self.workdir / "operator.log"
        # Unix socket paths are limited to ~100 bytes: pytest's tmp_path is too deep.
        self.plugin_dir = Path(tempfile.mkdtemp(prefix="bcp-op-"))
        self.process: asyncio.subprocess.Process | None = None

    @property
    def socket(self) -> Path:
        return self.plugin_dir / "barman-cloud.cloudnative-pg.io"

    def command(self) -> list[str]:
        flags = [
            f"--plugin-path={self.plugin_dir}",
            f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
        ]
        if self.leader_elect:
            flags.append("--leader-elect")
        return [CLI, "operator", *flags, "--log-level=debug"]

    def environment(self) -> dict[str, str]:
        cleaned = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "POD_NAME")
        }
        return {
            **cleaned,
            "SIDECAR_IMAGE": SIDECAR_IMAGE,
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAME": self.name,
            **self.extra_env,
        }

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                env=self.environment(),
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
            )

    def log(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue
        return entries

    def messages(self, text: str) -> list[dict[str, Any]]:
        return [entry for entry in self.log() if text in str(entry.get("msg", ""))]

    def tail(self) -> str:
        return f"--- {self.name} log ({self.log_path}) ---\n{tail(self.log_path, 60)}"

    def exited(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL if it hangs: the test fails then)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout}s\n{self.tail()}") from None
        assert self.process.returncode is not None
        shutil.rmtree(self.plugin_dir, ignore_errors=True)
        return self.process.returncode


async def eventually(
    check: Callable[[], T | bool | None],
    *,
    what: str,
    timeout: float = 90.0,
    processes: tuple[OperatorProcess, ...] = (),
) -> T:
    """Poll ``check`` (yielding to the event loop, which serves the emulator) until it returns a
    truthy value. The timeout only turns a hang into a failure with the operators' logs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if result:
            return result  # type: ignore[return-value]
        for process in processes:
            if process.exited() is not None:
                code = process.exited()
                raise AssertionError(
                    f"{process.name} exited with {code} while waiting for {what}\n{process.tail()}"
                )
        if loop.time() > deadline:
            logs = "\n".join(process.tail() for process in processes)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.1)
