"""Running the real daemon as a subprocess against a fake X-Ray endpoint, over real UDP.

Every wait here has a real-time deadline and every daemon a test starts is killed when the test
ends, so a hung daemon fails one test quickly instead of stalling the suite. The daemon's output
is printed at teardown; pytest shows it only for failing tests.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import signal
    from collections.abc import Callable

    from fake_xray import FakeXRay

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "datagrams"

ACCESS_KEY_ID = "AKIDE2ETESTEXAMPLE"
SECRET_ACCESS_KEY = "e2e/secret/wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"

SDK_HEADER = b'{"format":"json","version":1}\n'

READY_LINE = "Listening on UDP"
"""Logged at Debug once the UDP socket is bound; datagrams sent earlier would be lost."""
STARTUP_TIMEOUT_S = 15.0
EXIT_TIMEOUT_S = 15.0

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d) "
    r"\[(?:Trace|Debug|Info|Warn|Error|Critical)\] "
)
"""Go's seelog line: local RFC 3339 time to the second, the level in brackets, the message."""


def free_port(kind: socket.SocketKind) -> int:
    """A loopback port that was free a moment ago (the daemon binds it right after)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def body_of(datagram: bytes) -> bytes:
    """The document part of a datagram: everything after the first newline, untouched."""
    return datagram.split(b"\n", 1)[1]


def data_file(name: str) -> bytes:
    return (DATA_DIR / name).read_bytes()


def as_bytes(document: str) -> bytes:
    """A document the fake decoded, back to the bytes it was on the wire."""
    return document.encode("utf-8", "surrogateescape")


def base_env() -> dict[str, str]:
    """The test process's environment minus anything AWS, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # The package is run from the source tree, not installed; cwd is tmp_path on purpose.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # PYTHONUNBUFFERED is deliberately not set: logs and --sink stdout must reach a pipe
    # promptly on their own, as they do under systemd or docker.
    env.pop("PYTHONUNBUFFERED", None)
    return env


def aws_env() -> dict[str, str]:
    """Static fake credentials, no instance metadata, and no shared config of the machine's."""
    env = base_env()
    # tests/conftest.py points these at empty files; keep them so a developer's ~/.aws
    # (profiles, endpoint overrides) cannot leak into the daemon.
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


class Daemon:
    """One ``python -m xray_trio`` process with its stdout and stderr collected line by line."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self._cond = threading.Condition()
        self._lines: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xray_trio", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            with self._cond:
                self._lines[name].append(line)
                self._cond.notify_all()

    # -- output ------------------------------------------------------------------------------

    def lines(self, stream: str = "all") -> list[str]:
        """Output lines decoded leniently (log lines may echo raw packet bytes)."""
        with self._cond:
            names = ["stdout", "stderr"] if stream == "all" else [stream]
            raw = [line for n in names for line in self._lines[n]]
        return [line.decode("utf-8", "replace").rstrip("\r\n") for line in raw]

    def raw_lines(self, stream: str) -> list[bytes]:
        with self._cond:
            return list(self._lines[stream])

    def output(self) -> str:
        return "\n".join(self.lines())

    def log_lines(self, level: str, stream: str = "all") -> list[str]:
        """Messages of well-formed log lines at ``level`` (e.g. ``Warn``), without the prefix."""
        return [
            line[match.end() :]
            for line in self.lines(stream)
            if (match := LOG_LINE.match(line)) and f"[{level}] " in match.group(0)
        ]

    def wait_until(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        """Wait for ``done()`` to hold, re-checked on each output line; fail with the output."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._readers_alive()):
                    code = self.proc.poll()
                    why = f"the daemon exited ({code})" if code is not None else f"{timeout_s} s"
                    raise AssertionError(
                        f"gave up waiting for {what}: {why}; daemon output:\n{self.output()}"
                    )
                self._cond.wait(min(left, 0.1))

    def _readers_alive(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def wait_for_line(self, text: str, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        self.wait_until(repr(text), lambda: any(text in line for line in self.lines()), timeout_s)
        return next(line for line in self.lines() if text in line)

    # -- lifetime ----------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """The exit code; the daemon is killed (and the test fails) if it takes too long."""
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"daemon still running {timeout_s} s later; output:\n{self.output()}"
            ) from None
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Harness:
    """Starts daemons for one test, wired to the test's fake endpoint and free ports."""

    def __init__(self, tmp_path: Path, fake: FakeXRay) -> None:
        self.tmp_path = tmp_path
        self.fake = fake
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port(socket.SOCK_STREAM)
        self.daemons: list[Daemon] = []
        self._client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    @property
    def udp_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.udp_port)

    def write_config(self, udp_address: str | None = None) -> Path:
        udp = udp_address or f"127.0.0.1:{self.udp_port}"
        path = self.tmp_path / "xray-e2e.yaml"
        path.write_text(
            "Version: 2\n"
            f"Endpoint: {self.fake.url}\n"
            "Socket:\n"
            f"  UDPAddress: {udp}\n"
            f"  TCPAddress: 127.0.0.1:{self.tcp_port}\n"
        )
        return path

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> Daemon:
        """Start a daemon with exactly these arguments (no readiness wait)."""
        daemon = Daemon(args, cwd=self.tmp_path, env=aws_env() if env is None else env)
        self.daemons.append(daemon)
        return daemon

    def start(self, *extra_args: str, udp_address: str | None = None) -> Daemon:
        """The standard daemon against the fake, started and ready for datagrams."""
        config = self.write_config(udp_address)
        daemon = self.spawn(["-o", "-n", REGION, "-c", str(config), "-l", "debug", *extra_args])
        daemon.wait_for_line(READY_LINE)
        return daemon

    def send(self, *datagrams: bytes) -> None:
        for datagram in datagrams:
            self._client.sendto(datagram, self.udp_address)

    def close(self) -> None:
        self._client.close()
        for daemon in self.daemons:
            daemon.kill()
            print(f"--- daemon {daemon.args} exit {daemon.proc.returncode} ---")
            print(daemon.output())
