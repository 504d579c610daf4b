"""The ``xray-trio`` command: the Go daemon's flags, parsed as Go's ``flag`` package parses them.

    xray-trio [options]            the daemon, a drop-in for the Go ``xray`` binary
    xray-trio inspect [options]    the live inspector (``xray_trio.tui``)

Start-up follows Go's order: the default config file, the flags, the ``-c`` file (validated, then
loaded), ``-v``, and only then the logger and the daemon. This is the only module that turns
errors into exit codes: 0 ok, 1 config or start-up failure, 2 flag syntax.
"""

from __future__ import annotations

import dataclasses
import importlib
import signal
import sys
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, TextIO

import trio

from xray_trio import __version__
from xray_trio.config import (
    CliOverrides,
    apply_cli,
    check_address,
    check_sink,
    load_config,
    validate_config_file,
)
from xray_trio.errors import ConfigError, StartupError, leaf_exceptions
from xray_trio.log import close_logger, open_logger, write_early_error

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Sequence

    from xray_trio.config import Config

_Kind = Literal["string", "int", "bool", "sink", "address"]
_CONFIG: Final = "config"
_VERSION: Final = "version"
_INTERRUPTED: Final = 130


@dataclasses.dataclass(frozen=True, slots=True)
class _Flag:
    short: str
    """One letter, or empty for the options Go does not have (long form only)."""
    long: str
    kind: _Kind
    dest: str
    """The ``CliOverrides`` field set, or ``_CONFIG`` / ``_VERSION``."""
    help: str


_FLAGS: Final = (
    _Flag(
        "a",
        "resource-arn",
        "string",
        "resource_arn",
        "Amazon Resource Name (ARN) of the AWS resource running the daemon.",
    ),
    _Flag("o", "local-mode", "bool", "local_mode", "Don't check for EC2 instance metadata."),
    _Flag(
        "m",
        "buffer-memory",
        "int",
        "total_buffer_size_mb",
        "Change the amount of memory in MB that buffers can use (minimum 3).",
    ),
    _Flag(
        "n", "region", "string", "region", "Send segments to X-Ray service in a specific region."
    ),
    _Flag("b", "bind", "string", "udp_address", "Overrides default UDP address (127.0.0.1:2000)."),
    _Flag(
        "t", "bind-tcp", "string", "tcp_address", "Overrides default TCP address (127.0.0.1:2000)."
    ),
    _Flag(
        "r",
        "role-arn",
        "string",
        "role_arn",
        "Assume the specified IAM role to upload segments to a different account.",
    ),
    _Flag("c", "config", "string", _CONFIG, "Load a configuration file from the specified path."),
    _Flag("f", "log-file", "string", "log_path", "Output logs to the specified file path."),
    _Flag(
        "l",
        "log-level",
        "string",
        "log_level",
        "Log level, from most verbose to least: dev, debug, info, warn, error, prod (default).",
    ),
    _Flag(
        "p",
        "proxy-address",
        "string",
        "proxy_address",
        "Proxy address through which to upload segments.",
    ),
    _Flag("v", "version", "bool", _VERSION, "Show AWS X-Ray daemon version."),
    _Flag(
        "",
        "sink",
        "sink",
        "sinks",
        "Where accepted segments go: xray (default) or stdout; repeat to use both.",
    ),
    _Flag(
        "",
        "admin",
        "address",
        "admin_address",
        "Serve health, metrics and events on this address, e.g. 127.0.0.1:2020 (default off).",
    ),
)
_FLAGS_BY_NAME: Final = {name: flag for flag in _FLAGS for name in (flag.short, flag.long) if name}
_GO_BOOLS: Final = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def _usage_line(short: str, long: str, help_text: str) -> str:
    # Go's text pads the long name with tabs so every description starts at column 32.
    gap = "\t\t" if len(long) + 2 < 8 else "\t"
    return f"\t{'-' + short if short else ''}\t--{long}{gap}{help_text}\n"


USAGE: Final = (
    "Usage: X-Ray [options]\n"
    + "".join(_usage_line(f.short, f.long, f.help) for f in _FLAGS if f.short)
    + _usage_line("h", "help", "Show this screen")
    + "".join(_usage_line(f.short, f.long, f.help) for f in _FLAGS if not f.short)
)
"""The help text: Go's lines byte for byte, then the options only xray-trio has."""


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedArgs:
    """What the command line asked for."""

    overrides: CliOverrides
    config_path: str = ""
    show_version: bool = False


class HelpRequested(Exception):
    """``-h``, ``-help`` or ``--help`` (with any value, as in Go)."""


class FlagError(Exception):
    """A command line Go's ``flag`` package would refuse; the message is Go's text."""


def parse_args(argv: Sequence[str]) -> ParsedArgs:
    """Parse like Go's ``flag.Parse``: stop at the first non-flag, ``-`` or ``--``."""
    values: dict[str, Any] = {}
    args = list(argv)
    while args and len(args[0]) >= 2 and args[0].startswith("-") and args[0] != "--":
        arg = args.pop(0)
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, equals, value = name.partition("=")
        flag = _FLAGS_BY_NAME.get(name)
        if flag is None:
            if name in ("h", "help"):
                raise HelpRequested
            raise FlagError(f"flag provided but not defined: -{name}")
        if not equals:
            if flag.kind == "bool":
                value = "true"  # a bare bool flag; `-o false` leaves "false" as a positional
            elif args:
                value = args.pop(0)
            else:
                raise FlagError(f"flag needs an argument: -{name}")
        _store(values, flag, _convert(flag, name, value))
    config_path = values.pop(_CONFIG, "")
    show_version = values.pop(_VERSION, False)
    return ParsedArgs(CliOverrides(**values), config_path, show_version)


def _convert(flag: _Flag, name: str, value: str) -> object:
    """The typed value of one flag, or Go's error for it (``name`` as the user spelled it)."""
    if flag.kind == "bool":
        parsed = _GO_BOOLS.get(value)
        if parsed is None:
            raise FlagError(f"invalid boolean value {go_quote(value)} for -{name}: parse error")
        return parsed
    try:
        if flag.kind == "int":
            return parse_go_int(value)
        if flag.kind == "sink":
            check_sink(value)
        elif flag.kind == "address" and value:
            check_address(value)
    except ValueError as exc:
        raise FlagError(f"invalid value {go_quote(value)} for flag -{name}: {exc}") from None
    return value


def _store(values: dict[str, Any], flag: _Flag, value: object) -> None:
    if flag.kind == "sink":
        # Repeatable: the first --sink replaces the configured list, later ones add to it.
        values[flag.dest] = tuple(dict.fromkeys((*values.get(flag.dest, ()), value)))
    else:
        values[flag.dest] = value


def parse_go_int(text: str) -> int:
    """``strconv.ParseInt(text, 0, 64)``: optional sign, 0x/0o/0b/0 prefixes, ``_`` separators.

    Raises ``ValueError`` with Go's reason, ``parse error`` or ``value out of range``.
    """
    digits = text[1:] if text[:1] in ("+", "-") else text
    magnitude = _parse_go_uint(digits)
    limit = 2**63 if text.startswith("-") else 2**63 - 1
    if magnitude > limit:
        raise ValueError("value out of range")
    return -magnitude if text.startswith("-") else magnitude


def _parse_go_uint(text: str) -> int:
    if not text:
        raise ValueError("parse error")
    base, body = 10, text
    if text.startswith("0"):
        prefix = text[1:2].lower()
        if len(text) >= 3 and prefix in ("b", "o", "x"):
            base, body = {"b": 2, "o": 8, "x": 16}[prefix], text[2:]
        else:
            base, body = 8, text[1:]
    value = 0
    for char in body:
        if char == "_":
            continue
        digit = int(char, 36) if char.isascii() and char.isalnum() else base
        if digit >= base:
            raise ValueError("parse error")
        value = value * base + digit
        if value >= 2**64:
            raise ValueError("value out of range")  # Go stops at the overflow, whatever follows
    if "_" in body and not _underscores_ok(text):
        raise ValueError("parse error")
    return value


def _underscores_ok(text: str) -> bool:
    """Go's rule: an underscore sits between digits, or between the base prefix and a digit."""
    saw, rest = "^", text
    hex_digits = False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in ("b", "o", "x"):
        saw, rest, hex_digits = "0", text[2:], text[1].lower() == "x"
    for char in rest:
        if char.isdigit() or (hex_digits and char.lower() in "abcdef"):
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string, as used in flag error messages."""
    out = []
    for char in text:
        code = ord(char)
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")  # an undecodable argv byte (surrogateescape)
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def run(argv: list[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """Run the command line ``argv`` (without the program name); returns the exit code."""
    if argv[:1] == ["inspect"]:
        return _run_inspect(argv[1:], stderr)
    try:
        # Go loads the default config before parsing, so a broken one fails even `-h`.
        config = load_config()
    except ConfigError as exc:
        write_early_error(str(exc), stream=stderr)
        return 1
    try:
        args = parse_args(argv)
    except HelpRequested:
        stdout.write(USAGE)
        return 0
    except FlagError as exc:
        stderr.write(f"{exc}\n")
        stdout.write(USAGE)
        return 2
    if args.config_path:
        # Errors in the -c file also go to the log file in effect so far (the -f flag, or the
        # default file's LogPath), as Go's remembered -f value does.
        log_path = args.overrides.log_path
        early_log = config.logging.log_path if log_path is None else log_path
        try:
            validate_config_file(args.config_path)
            config = load_config(args.config_path)
        except ConfigError as exc:
            write_early_error(str(exc), stream=stderr, log_path=early_log)
            return 1
    config = apply_cli(config, args.overrides)
    if args.show_version:
        stdout.write(f"AWS X-Ray daemon version: {__version__}\n")
        return 0
    return _serve(config, stdout=stdout, stderr=stderr)


def _run_inspect(argv: list[str], stderr: TextIO) -> int:
    try:
        module = importlib.import_module("xray_trio.tui.app")
    except ImportError as exc:
        stderr.write(
            f"xray-trio inspect is not available ({exc}); reinstall xray-trio with its "
            "dependencies (pip install xray-trio)\n"
        )
        return 1
    run_inspect: Callable[[list[str]], int] = module.run_inspect
    return run_inspect(argv)


def _serve(config: Config, *, stdout: TextIO, stderr: TextIO) -> int:
    # Imported here so -h, -v and config errors never pay for httpx and botocore.
    from xray_trio.daemon import run_daemon

    # With the stdout sink, standard output carries segment JSON, so log lines move aside.
    stream = stderr if "stdout" in config.sinks else stdout
    logger = open_logger(config.logging, stream=stream)
    # Log-rotation scripts send SIGUSR1/SIGUSR2; the Go daemon ignores them, and so must we
    # (Python's default for both is to die on the spot, without flushing anything).
    for name in ("SIGUSR1", "SIGUSR2"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        return _run_until_done(run_daemon, config, logger)
    finally:
        close_logger(logger)


def _run_until_done(
    run_daemon: Callable[[Config, logging.Logger], Any], config: Config, logger: logging.Logger
) -> int:
    failures: list[BaseException] = []
    try:
        trio.run(run_daemon, config, logger)
    except* (ConfigError, StartupError) as group:
        failures = leaf_exceptions(group)
    for failure in failures:
        logger.error("%s", failure)
    return 1 if failures else 0


def main() -> NoReturn:
    """The ``xray-trio`` console script and ``python -m xray_trio``."""
    code = _INTERRUPTED
    try:
        code = run(sys.argv[1:], stdout=sys.stdout, stderr=sys.stderr)
    except* KeyboardInterrupt:
        pass  # Ctrl-C before the daemon handles signals itself: exit quietly, no traceback
    sys.exit(code)
