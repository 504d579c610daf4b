"""The runner's handle on the fake endpoint process: start, configure, read counters, stop."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from typing import IO, TYPE_CHECKING, Any

from bench.daemons import REPO, die_with_parent

if TYPE_CHECKING:
    from pathlib import Path


class EndpointProcess:
    def __init__(self, log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.endpoint", "--port", "0"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            preexec_fn=die_with_parent,  # safe: the runner is single-threaded
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until bound; EOF if it died
        if not line:
            self.close()
            raise RuntimeError(f"fake endpoint failed to start, see {log}")
        info = json.loads(line)
        self.port: int = info["port"]
        self.pid: int = self.proc.pid

    def __enter__(self) -> EndpointProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **query: object) -> dict[str, Any]:
        qs = urllib.parse.urlencode(query)
        url = f"http://127.0.0.1:{self.port}{path}?{qs}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def configure(self, **settings: float) -> dict[str, Any]:
        return self._get("/_bench/config", **settings)

    def phase_stats(self, phase: int) -> dict[str, Any]:
        stats: dict[str, Any] = self._get("/_bench/stats", phase=phase)["phase"]
        return stats

    def stats(self) -> dict[str, Any]:
        return self._get("/_bench/stats")

    def forget(self, phase: int) -> None:
        self._get("/_bench/forget", phase=phase)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
