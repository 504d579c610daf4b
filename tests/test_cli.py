"""The command line: Go's flag parsing, help, -v, start-up order, exit codes (spec §1, §2)."""

from __future__ import annotations

import io
import os
import re
import sys
import types
from typing import TYPE_CHECKING

import pytest

from xray_trio import __version__, cli
from xray_trio.cli import USAGE, ParsedArgs, go_quote, parse_args, parse_go_int, run
from xray_trio.config import CliOverrides, Config
from xray_trio.errors import StartupError

if TYPE_CHECKING:
    import logging
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    os.path.exists("/etc/amazon/xray/cfg.yaml"),
    reason="a machine-wide X-Ray config would be loaded by every run",
)

# The Go daemon's help text, byte for byte (`xray -h`).
GO_USAGE = (
    "Usage: X-Ray [options]\n"
    "\t-a\t--resource-arn\tAmazon Resource Name (ARN) of the AWS resource running the daemon.\n"
    "\t-o\t--local-mode\tDon't check for EC2 instance metadata.\n"
    "\t-m\t--buffer-memory\tChange the amount of memory in MB that buffers can use (minimum 3).\n"
    "\t-n\t--region\tSend segments to X-Ray service in a specific region.\n"
    "\t-b\t--bind\t\tOverrides default UDP address (127.0.0.1:2000).\n"
    "\t-t\t--bind-tcp\tOverrides default TCP address (127.0.0.1:2000).\n"
    "\t-r\t--role-arn\tAssume the specified IAM role to upload segments to a different account.\n"
    "\t-c\t--config\tLoad a configuration file from the specified path.\n"
    "\t-f\t--log-file\tOutput logs to the specified file path.\n"
    "\t-l\t--log-level\tLog level, from most verbose to least: dev, debug, info, warn, error, "
    "prod (default).\n"
    "\t-p\t--proxy-address\tProxy address through which to upload segments.\n"
    "\t-v\t--version\tShow AWS X-Ray daemon version.\n"
    "\t-h\t--help\t\tShow this screen\n"
)
EXTENSION_USAGE = (
    "\t\t--sink\t\tWhere accepted segments go: xray (default) or stdout; repeat to use both.\n"
    "\t\t--admin\t\tServe health, metrics and events on this address, e.g. 127.0.0.1:2020 "
    "(default off).\n"
)
VERSION_LINE = f"AWS X-Ray daemon version: {__version__}\n"
ERROR_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d) \[Error\] (.*)", re.S)
DOCS = "Please refer to AWS X-Ray Documentation for more information."


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory, so no ./cfg.yaml is picked up."""
    monkeypatch.chdir(tmp_path)


def call(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def error_message(text: str) -> str:
    match = ERROR_LINE.fullmatch(text)
    assert match, text
    assert text.endswith("\n")
    return match[1].removesuffix("\n")


def test_usage_is_gos_text_then_ours() -> None:
    assert USAGE == GO_USAGE + EXTENSION_USAGE


@pytest.mark.parametrize(
    "argv",
    [["-h"], ["-help"], ["--help"], ["--h"], ["-h=false"], ["--help=x"], ["-o", "-h", "-x"]],
)
def test_help_goes_to_stdout_and_exits_0(argv: list[str]) -> None:
    assert call(*argv) == (0, USAGE, "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-x"], "flag provided but not defined: -x"),
        (["--xyz=1"], "flag provided but not defined: -xyz"),
        (["-V"], "flag provided but not defined: -V"),  # names are case-sensitive
        (["-v=0", "-x"], "flag provided but not defined: -x"),  # parsing goes on after -v
        (["-x", "-h"], "flag provided but not defined: -x"),
        (["-n"], "flag needs an argument: -n"),
        (["--region"], "flag needs an argument: -region"),
        (["--c"], "flag needs an argument: -c"),
        (["-m", "abc"], 'invalid value "abc" for flag -m: parse error'),
        (["--buffer-memory=1.5"], 'invalid value "1.5" for flag -buffer-memory: parse error'),
        (["-m="], 'invalid value "" for flag -m: parse error'),
        (["-m", " 5"], 'invalid value " 5" for flag -m: parse error'),
        (["-m", "08"], 'invalid value "08" for flag -m: parse error'),
        (["-m", 'a"b\t'], 'invalid value "a\\"b\\t" for flag -m: parse error'),
        (
            ["-m", "99999999999999999999"],
            'invalid value "99999999999999999999" for flag -m: value out of range',
        ),
        (["-o=maybe"], 'invalid boolean value "maybe" for -o: parse error'),
        (["--local-mode="], 'invalid boolean value "" for -local-mode: parse error'),
        (["-o=yes"], 'invalid boolean value "yes" for -o: parse error'),
        (["---v"], "bad flag syntax: ---v"),
        (["-=x"], "bad flag syntax: -=x"),
        (["--=x"], "bad flag syntax: --=x"),
        (
            ["--sink", "kinesis"],
            'invalid value "kinesis" for flag -sink: unknown sink (choose xray or stdout)',
        ),
        (
            ["--admin=localhost"],
            'invalid value "localhost" for flag -admin: want HOST:PORT, e.g. 127.0.0.1:2020',
        ),
    ],
)
def test_flag_errors_exit_2_with_gos_message_then_usage(argv: list[str], message: str) -> None:
    assert call(*argv) == (2, USAGE, message + "\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["-v"],
        ["--version"],
        ["-version"],
        ["-v=true"],
        ["--version=1"],
        ["-o", "-v"],
        ["-m", "0x10", "-v"],
        ["-l", "bogus", "-v"],
        ["-v", "--", "-x"],  # `--` ends the flags; the rest is ignored
        ["-v", "-", "-x"],
        ["-v", "positional", "-x"],
        ["-c", "", "-v"],  # an empty -c means no file
    ],
)
def test_version(argv: list[str]) -> None:
    assert call(*argv) == (0, VERSION_LINE, "")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ParsedArgs(CliOverrides())),
        (["-n", "us-west-2"], ParsedArgs(CliOverrides(region="us-west-2"))),
        (["--region=us-west-2"], ParsedArgs(CliOverrides(region="us-west-2"))),
        (["-region", "a", "--n", "b"], ParsedArgs(CliOverrides(region="b"))),  # last wins
        (["-n=a=b"], ParsedArgs(CliOverrides(region="a=b"))),
        (["-n", "-o"], ParsedArgs(CliOverrides(region="-o"))),  # a value may look like a flag
        (["-o"], ParsedArgs(CliOverrides(local_mode=True))),
        (["--local-mode=F"], ParsedArgs(CliOverrides(local_mode=False))),
        # `-o false` does not work in Go: "false" is a positional and parsing stops there.
        (["-o", "false", "-n", "x"], ParsedArgs(CliOverrides(local_mode=True))),
        (["--", "-n", "x"], ParsedArgs(CliOverrides())),
        (["-", "-n", "x"], ParsedArgs(CliOverrides())),
        (["run", "-n", "x"], ParsedArgs(CliOverrides())),
        (["-m", "-5"], ParsedArgs(CliOverrides(total_buffer_size_mb=-5))),
        (
            ["-a", "arn", "-b", "0.0.0.0:2000", "-t", "0.0.0.0:2001", "-r", "role"],
            ParsedArgs(
                CliOverrides(
                    resource_arn="arn",
                    udp_address="0.0.0.0:2000",
                    tcp_address="0.0.0.0:2001",
                    role_arn="role",
                )
            ),
        ),
        (
            ["-f", "x.log", "-l", "dev", "-p", "http://proxy:3128"],
            ParsedArgs(
                CliOverrides(log_path="x.log", log_level="dev", proxy_address="http://proxy:3128")
            ),
        ),
        (["-c", "cfg.yaml"], ParsedArgs(CliOverrides(), config_path="cfg.yaml")),
        (["-v=false"], ParsedArgs(CliOverrides(), show_version=False)),
        (
            ["--sink", "stdout", "--sink=xray", "--sink", "stdout"],
            ParsedArgs(CliOverrides(sinks=("stdout", "xray"))),
        ),
        (["--admin", ""], ParsedArgs(CliOverrides(admin_address=""))),
        (["--admin", "[::1]:2020"], ParsedArgs(CliOverrides(admin_address="[::1]:2020"))),
    ],
)
def test_parse_args(argv: list[str], expected: ParsedArgs) -> None:
    assert parse_args(argv) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("+5", 5),
        ("-5", -5),
        ("0x1F", 31),
        ("0X1f", 31),
        ("017", 15),
        ("0o17", 15),
        ("0O17", 15),
        ("0b101", 5),
        ("1_000", 1000),
        ("0_7", 7),
        ("0x_1", 1),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
    ],
)
def test_go_int(text: str, value: int) -> None:
    assert parse_go_int(text) == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "parse error"),
        ("+", "parse error"),
        ("+-5", "parse error"),
        ("08", "parse error"),
        ("0x", "parse error"),
        ("0o", "parse error"),
        ("1e3", "parse error"),
        (" 5", "parse error"),
        ("_1", "parse error"),
        ("1_", "parse error"),
        ("1__0", "parse error"),
        ("٣", "parse error"),  # only ASCII digits
        ("9223372036854775808", "value out of range"),
        ("-9223372036854775809", "value out of range"),
        ("99999999999999999999x", "value out of range"),  # Go stops at the overflow
    ],
)
def test_go_int_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}$"):
        parse_go_int(text)


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("abc", '"abc"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("\t\n\r\a\b\f\v", '"\\t\\n\\r\\a\\b\\f\\v"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("é名", '"é名"'),
        ("\u00a0", '"\\u00a0"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("\udcff", '"\\xff"'),  # an undecodable argv byte
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_missing_c_file_exits_1_with_go_text() -> None:
    code, out, err = call("-c", "nofile.yaml")
    assert (code, out) == (1, "")
    assert error_message(err) == (
        "Error occur when using config flag: open nofile.yaml: no such file or directory"
    )


def test_c_errors_are_also_appended_to_the_f_file(tmp_path: Path) -> None:
    (tmp_path / "u.yaml").write_text("Version: 2\nFoo: 1\n")
    code, _, err = call("-c", "u.yaml", "-f", "err.log")
    assert code == 1
    assert error_message(err) == f"Foo flag is invalid. {DOCS}"
    assert (tmp_path / "err.log").read_text() == err


def test_c_errors_go_to_the_default_files_log_path(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("Version: 2\nLogging:\n  LogPath: def.log\n")
    (tmp_path / "u.yaml").write_text("Version: 2\nFoo: 1\n")
    code, _, err = call("-c", "u.yaml")
    assert code == 1
    assert (tmp_path / "def.log").read_text() == err
    (tmp_path / "def.log").unlink()
    assert call("-c", "u.yaml", "-f", "")[0] == 1  # an explicit empty -f means no file
    assert not (tmp_path / "def.log").exists()


def test_a_broken_default_config_fails_even_help(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("Version: 5\n")
    code, out, err = call("-h", "-f", "err.log")
    assert (code, out) == (1, "")
    assert error_message(err).startswith("Config Version Setting is not correct.")
    assert not (tmp_path / "err.log").exists()  # it failed before -f was read


def test_a_broken_c_file_still_allows_help_but_not_version(tmp_path: Path) -> None:
    (tmp_path / "u.yaml").write_text("Version: 2\nFoo: 1\n")
    assert call("-c", "u.yaml", "-h") == (0, USAGE, "")
    assert call("-c", "u.yaml", "-x")[0] == 2
    code, out, err = call("-c", "u.yaml", "-v")
    assert (code, out) == (1, "")
    assert error_message(err) == f"Foo flag is invalid. {DOCS}"


def test_a_c_file_with_a_type_error_exits_1(tmp_path: Path) -> None:
    (tmp_path / "u.yaml").write_text("Version: 2\nTotalBufferSizeMB: NotExist\n")
    code, _, err = call("-c", "u.yaml", "-v")
    assert code == 1
    assert error_message(err) == (
        "Error occur when using config flag: yaml: unmarshal errors:\n"
        "  line 2: cannot unmarshal !!str `NotExist` into int"
    )


def test_inspect_without_the_inspector_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xray_trio.tui.app", None)  # makes the import fail
    code, out, err = call("inspect", "--attach", "127.0.0.1:2020")
    assert (code, out) == (1, "")
    assert err.startswith("xray-trio inspect is not available (")


def test_inspect_hands_the_rest_of_argv_to_the_inspector(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    app = types.ModuleType("xray_trio.tui.app")
    app.run_inspect = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "xray_trio.tui.app", app)
    assert call("inspect", "--attach", "127.0.0.1:2020") == (7, "", "")
    assert seen == [["--attach", "127.0.0.1:2020"]]


class FakeDaemon:
    """Stands in for ``run_daemon`` at the CLI's boundary; no sockets are opened."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[tuple[Config, logging.Logger]] = []

    async def __call__(self, config: Config, logger: logging.Logger) -> None:
        self.calls.append((config, logger))
        logger.info("daemon ran")
        logger.debug("debug line")
        if self.error is not None:
            raise self.error


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> FakeDaemon:
    daemon_module = pytest.importorskip("xray_trio.daemon")
    fake = FakeDaemon()
    monkeypatch.setattr(daemon_module, "run_daemon", fake)
    return fake


def test_flags_beat_the_c_file_which_beats_defaults(
    tmp_path: Path, fake_daemon: FakeDaemon
) -> None:
    (tmp_path / "u.yaml").write_text(
        "Version: 2\nRegion: file\nLocalMode: true\nLogging:\n  LogLevel: warn\n"
    )
    code, out, err = call("-c", "u.yaml", "-n", "flag", "-l", "info")
    assert (code, err) == (0, "")
    [(config, _)] = fake_daemon.calls
    assert (config.region, config.local_mode, config.concurrency) == ("flag", True, 8)
    assert config.logging.log_level == "info"
    assert [line.split("] ", 1)[1] for line in out.splitlines()] == ["daemon ran"]


def test_logs_move_to_stderr_with_the_stdout_sink(fake_daemon: FakeDaemon) -> None:
    code, out, err = call("--sink", "stdout", "-l", "dev")
    assert (code, out) == (0, "")
    assert [line.split("] ", 1)[1] for line in err.splitlines()] == ["daemon ran", "debug line"]
    assert fake_daemon.calls[0][0].sinks == ("stdout",)


@pytest.mark.parametrize(
    "error",
    [
        StartupError("listen udp 127.0.0.1:2000: bind: address already in use"),
        ExceptionGroup(
            "nursery", [StartupError("listen udp 127.0.0.1:2000: bind: address already in use")]
        ),
    ],
)
def test_startup_errors_are_logged_and_exit_1(
    fake_daemon: FakeDaemon, error: BaseException
) -> None:
    fake_daemon.error = error
    code, out, _ = call("-o")
    assert code == 1
    assert out.splitlines()[-1].endswith(
        "[Error] listen udp 127.0.0.1:2000: bind: address already in use"
    )


def test_ctrl_c_exits_quietly(
    fake_daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_daemon.error = KeyboardInterrupt()
    monkeypatch.setattr(sys, "argv", ["xray-trio", "-o"])
    with pytest.raises(SystemExit) as excinfo:
        cli.main()
    assert excinfo.value.code == 130
    assert "Traceback" not in capsys.readouterr().err
