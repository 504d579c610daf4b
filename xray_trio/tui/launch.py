"""``xray-trio inspect``: the daemon's flags (parsed by ``cli``) plus ``--attach HOST:PORT``.

    xray-trio inspect [daemon flags]     run the daemon here, under the dashboard
    xray-trio inspect --attach ADDR      watch a running daemon's ``--admin`` endpoint

Exit codes as for the daemon: 0 ok, 1 config or start-up failure, 2 flag syntax.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Final

from xray_trio import __version__, cli
from xray_trio.config import apply_cli, check_address, load_config, validate_config_file
from xray_trio.errors import ConfigError
from xray_trio.log import close_logger, open_logger, write_early_error

if TYPE_CHECKING:
    from typing import TextIO

    from xray_trio.config import Config

INSPECT_USAGE: Final = (
    "Usage: xray-trio inspect [options]\n"
    "\tRuns the daemon with a live dashboard; takes the daemon's options below.\n"
    "\t\t--attach\tWatch a running daemon's admin endpoint (HOST:PORT) instead.\n\n"
)


class _AttachError(Exception):
    """A bad ``--attach`` flag; the message follows Go's flag texts."""


def split_attach(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--attach ADDR`` (or ``-attach``, ``=ADDR``) out of ``argv``."""
    rest: list[str] = []
    address: str | None = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            rest += [arg, *args]
            break
        name, equals, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == "attach":
            if not equals:
                if not args:
                    raise _AttachError("flag needs an argument: -attach")
                value = args.pop(0)
            try:
                check_address(value)
            except ValueError as exc:
                raise _AttachError(
                    f"invalid value {cli.go_quote(value)} for flag -attach: {exc}"
                ) from None
            address = value
        else:
            rest.append(arg)
    return address, rest


def launch(argv: list[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """Parse ``argv`` and run the dashboard until the user quits."""
    try:
        address, rest = split_attach(argv)
        args = cli.parse_args(rest)
    except cli.HelpRequested:
        stdout.write(INSPECT_USAGE + cli.USAGE)
        return 0
    except (cli.FlagError, _AttachError) as exc:
        stderr.write(f"{exc}\n")
        stdout.write(INSPECT_USAGE + cli.USAGE)
        return 2
    if args.show_version:
        stdout.write(f"AWS X-Ray daemon version: {__version__}\n")
        return 0
    if address is not None:
        return _attach(address)
    try:
        config = load_config()
        if args.config_path:
            validate_config_file(args.config_path)
            config = load_config(args.config_path)
    except ConfigError as exc:
        write_early_error(str(exc), stream=stderr)
        return 1
    config = apply_cli(config, args.overrides)
    return _in_process(config, sinks_given=args.overrides.sinks, stderr=stderr)


def _attach(address: str) -> int:
    from xray_trio.tui.app import InspectApp
    from xray_trio.tui.source import AttachSource

    return InspectApp(AttachSource(address)).run() or 0


def _in_process(config: Config, *, sinks_given: tuple[str, ...] | None, stderr: TextIO) -> int:
    from xray_trio.tui.app import InspectApp
    from xray_trio.tui.inprocess import InProcessSource, LogBuffer, choose_sinks, panel_logger

    config, notice = choose_sinks(config, sinks_given=sinks_given is not None, env=os.environ)
    buffer = LogBuffer()
    if config.logging.log_path:
        # -f / LogPath: the file gets the log (as for the daemon); the panel says where it is.
        logger = open_logger(config.logging, stream=io.StringIO())
        note = f"daemon log: {config.logging.log_path}"
    else:
        logger = panel_logger(config.logging.log_level, buffer)
        note = ""
    try:
        source = InProcessSource(config, logger, notice=notice)
        return InspectApp(source, log_buffer=buffer, log_note=note).run() or 0
    finally:
        close_logger(logger)
        # What the daemon logged while the dashboard closed (the flush) would be lost with it.
        for _, line in buffer.drain():
            stderr.write(line + "\n")
