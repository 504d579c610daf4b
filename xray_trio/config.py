"""The daemon's configuration: frozen, typed, and passed explicitly to every task.

Field names follow the Go daemon's YAML keys (``TotalBufferSizeMB`` -> ``total_buffer_size_mb``).
Loading, validation and merging with Go's exact rules and error texts live in this module too:

    load_config(path)            a file (or the first one on the search path) merged over defaults
    validate_config_file(path)   the key checks Go runs on a ``-c`` file only
    apply_cli(config, flags)     explicit command-line flags over everything else
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from xray_trio.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

CONFIG_SEARCH_PATH: Final = (
    "/etc/amazon/xray/cfg.yaml",
    "./cfg.yaml",
    "./github.com/aws/aws-xray-daemon/pkg/cfg.yaml",
)
"""Where the config is looked for without ``-c``; the first existing file wins."""

SINK_NAMES: Final = ("xray", "stdout")
LOG_LEVEL_NAMES: Final = ("dev", "debug", "info", "warn", "error", "prod")

DEFAULT_UDP_ADDRESS = "127.0.0.1:2000"
DEFAULT_TCP_ADDRESS = "127.0.0.1:2000"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SocketConfig:
    udp_address: str = DEFAULT_UDP_ADDRESS
    """``Socket.UDPAddress`` / ``-b``: where SDKs send segment datagrams."""
    tcp_address: str = DEFAULT_TCP_ADDRESS
    """``Socket.TCPAddress`` / ``-t``: the SigV4 sampling proxy."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    log_rotation: bool = True
    """``Logging.LogRotation``: rotate the log file at 50 MiB, keeping one old file."""
    log_level: str = "prod"
    """``Logging.LogLevel`` / ``-l``: dev, debug, info, warn, error or prod."""
    log_path: str = ""
    """``Logging.LogPath`` / ``-f``: log file; empty means standard output."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tuning:
    """Knobs the Go daemon keeps as globals; tests set them without patching anything."""

    batch_size: int = 50
    """At most this many documents per PutTraceSegments call (the API's limit)."""
    idle_timeout_s: float = 1.0
    """A partial batch is sent after this long without a send."""
    batch_queue: int = 20
    """Batches waiting for an uploader before the batcher waits (and the budget fills)."""
    max_upload_concurrency: int = 64
    """Upload calls in flight may grow from ``Concurrency`` up to this while batches wait."""
    request_timeout_s: float = 2.0
    """Deadline of one HTTP attempt to X-Ray (Go: 2 s)."""
    retry_base_s: float = 0.1
    """First retry back-off; doubles per attempt, with full jitter."""
    retry_max_s: float = 10.0
    """Longest single back-off."""
    retry_deadline_s: float = 60.0
    """A batch still failing after this long is given up (counted and logged)."""
    shutdown_timeout_s: float = 30.0
    """After a shutdown signal, accepted segments get this long to be delivered."""
    receive_buffer_bytes: int = 4 * 1024 * 1024
    """SO_RCVBUF asked for the UDP socket, so bursts wait in the kernel instead of being dropped."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    total_buffer_size_mb: int = 0
    """``TotalBufferSizeMB`` / ``-m``: the byte budget for everything in flight; 0 = 1 % of RAM."""
    concurrency: int = 8
    """``Concurrency``: uploader tasks for the X-Ray sink."""
    endpoint: str = ""
    """``Endpoint``: X-Ray endpoint URL override, e.g. ``http://127.0.0.1:4566``."""
    region: str = ""
    """``Region`` / ``-n``."""
    socket: SocketConfig = dataclasses.field(default_factory=SocketConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    local_mode: bool = False
    """``LocalMode`` / ``-o``: never ask EC2/ECS metadata for the region."""
    resource_arn: str = ""
    """``ResourceARN`` / ``-a``: reported in telemetry."""
    role_arn: str = ""
    """``RoleARN`` / ``-r``: role assumed through STS for every call."""
    no_verify_ssl: bool = False
    """``NoVerifySSL``: skip TLS verification towards X-Ray."""
    proxy_address: str = ""
    """``ProxyAddress`` / ``-p``: HTTP(S) proxy for calls to X-Ray."""
    version: int = 1
    """``Version``: config file format, 1 or 2."""
    sinks: tuple[str, ...] = ("xray",)
    """``Sinks`` / ``--sink``: where accepted documents go: ``xray`` and/or ``stdout``."""
    admin_address: str = ""
    """``AdminAddress`` / ``--admin``: health, metrics and events endpoint; empty means off."""
    tuning: Tuning = dataclasses.field(default_factory=Tuning)

    @property
    def needs_aws(self) -> bool:
        """Whether any sink talks to AWS (and so a region and credentials are required)."""
        return "xray" in self.sinks


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CliOverrides:
    """Flags given on the command line; ``None`` means the flag was not given."""

    total_buffer_size_mb: int | None = None
    region: str | None = None
    udp_address: str | None = None
    tcp_address: str | None = None
    log_level: str | None = None
    log_path: str | None = None
    local_mode: bool | None = None
    resource_arn: str | None = None
    role_arn: str | None = None
    proxy_address: str | None = None
    sinks: tuple[str, ...] | None = None
    admin_address: str | None = None


def apply_cli(config: Config, flags: CliOverrides) -> Config:
    """Return ``config`` with every given flag applied: explicit flags beat the file."""
    top: dict[str, Any] = {
        name: value
        for name in (
            "total_buffer_size_mb",
            "region",
            "local_mode",
            "resource_arn",
            "role_arn",
            "proxy_address",
            "sinks",
            "admin_address",
        )
        if (value := getattr(flags, name)) is not None
    }
    socket: dict[str, Any] = {
        name: value
        for name, value in (("udp_address", flags.udp_address), ("tcp_address", flags.tcp_address))
        if value is not None
    }
    logging_: dict[str, Any] = {}
    if flags.log_path is not None:
        logging_["log_path"] = flags.log_path
    # Go compares the flag with the file's level and switches only to a level it knows, so
    # `-l bogus` keeps the file's level.
    if flags.log_level in LOG_LEVEL_NAMES:
        logging_["log_level"] = flags.log_level
    return dataclasses.replace(
        config,
        socket=dataclasses.replace(config.socket, **socket),
        logging=dataclasses.replace(config.logging, **logging_),
        **top,
    )


def check_sink(name: str) -> None:
    """Raise ``ValueError`` (the reason, for a message) unless ``name`` is a known sink."""
    if name not in SINK_NAMES:
        raise ValueError("unknown sink (choose xray or stdout)")


def check_address(address: str) -> None:
    """Raise ``ValueError`` (the reason, for a message) unless ``address`` is HOST:PORT."""
    _host, colon, port = address.rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("want HOST:PORT, e.g. 127.0.0.1:2020")


# --- The Go daemon's messages, word for word. ---

_DOCS = "Please refer to AWS X-Ray Documentation for more information."
_MIGRATE = "Use X-Ray Daemon Config Migration Script to update the config file. " + _DOCS
VERSION_MISSING: Final = "Config Version is missing. " + _MIGRATE
VERSION_NOT_CORRECT: Final = "Config Version Setting is not correct. " + _MIGRATE
_CONFIG_FLAG_ERROR = "Error occur when using config flag: "

_REMOVED_KEYS: Final = frozenset(
    {
        "Profile.CPU",
        "Profile.Memory",
        "Socket.BufferSizeKB",
        "Logging.LogFormat",
        "Processor.BatchProcessorQueueSize",
    }
)
_MIGRATED_KEYS: Final = frozenset(
    {"LogRotation", "Processor.Region", "Processor.Endpoint", "Processor.Routine", "MemoryLimit"}
)

# --- The one table from YAML keys to Config fields. ---

_Kind = Literal["int", "str", "bool", "strs"]


@dataclasses.dataclass(frozen=True, slots=True)
class _Key:
    name: str
    """The YAML key, ``Top`` or ``Top.Sub``."""
    kind: _Kind
    field: str
    """The dotted ``Config`` attribute; empty for keys Go accepts and then ignores."""


_KEYS: Final = (
    _Key("TotalBufferSizeMB", "int", "total_buffer_size_mb"),
    _Key("Concurrency", "int", "concurrency"),
    _Key("Endpoint", "str", "endpoint"),
    _Key("Region", "str", "region"),
    _Key("Socket.UDPAddress", "str", "socket.udp_address"),
    _Key("Socket.TCPAddress", "str", "socket.tcp_address"),
    # Go's hidden ProxyServer struct has no yaml tags, so only these lower-cased spellings are
    # valid; whatever they say, Go resets them to its defaults.
    _Key("proxyserver.idleconntimeout", "int", ""),
    _Key("proxyserver.maxidleconnsperhost", "int", ""),
    _Key("proxyserver.maxidleconns", "int", ""),
    _Key("Logging.LogRotation", "bool", "logging.log_rotation"),
    _Key("Logging.LogLevel", "str", "logging.log_level"),
    _Key("Logging.LogPath", "str", "logging.log_path"),
    _Key("LocalMode", "bool", "local_mode"),
    _Key("ResourceARN", "str", "resource_arn"),
    _Key("RoleARN", "str", "role_arn"),
    _Key("NoVerifySSL", "bool", "no_verify_ssl"),
    _Key("ProxyAddress", "str", "proxy_address"),
    _Key("Version", "int", "version"),
    _Key("Sinks", "strs", "sinks"),
    _Key("AdminAddress", "str", "admin_address"),
)
_KEYS_BY_NAME: Final = {key.name: key for key in _KEYS}
VALID_KEYS: Final = tuple(key.name for key in _KEYS)
"""Every key a ``-c`` file may hold: Go's list in Go's order, then xray-trio's own."""

# Go type names, as they appear in yaml.v2's "cannot unmarshal ... into <type>".
_GO_TYPES: Final[dict[_Kind, str]] = {
    "int": "int",
    "str": "string",
    "bool": "bool",
    "strs": "[]string",
}
_GROUP_GO_TYPES: Final = {
    "Socket": 'struct { UDPAddress string "yaml:\\"UDPAddress\\""; '
    'TCPAddress string "yaml:\\"TCPAddress\\"" }',
    "Logging": 'struct { LogRotation *bool "yaml:\\"LogRotation\\""; '
    'LogLevel string "yaml:\\"LogLevel\\""; LogPath string "yaml:\\"LogPath\\"" }',
    "proxyserver": "struct { IdleConnTimeout int; MaxIdleConnsPerHost int; MaxIdleConns int }",
}

_TAG_PREFIX = "tag:yaml.org,2002:"
_NULL = _TAG_PREFIX + "null"
_INT64 = range(-(2**63), 2**63)
# yaml.v2 resolves these YAML 1.1 spellings as booleans; PyYAML leaves them strings.
_SHORT_BOOLS: Final = {"y": True, "Y": True, "n": False, "N": False}


# --- Public entry points. ---


def load_config(path: str = "", *, search_path: Sequence[str] = CONFIG_SEARCH_PATH) -> Config:
    """Load ``path``, or the first file on ``search_path`` when it is empty, over the defaults.

    No file at all means the defaults. Raises ``ConfigError`` with Go's text.
    """
    if not path:
        path = next((candidate for candidate in search_path if os.path.exists(candidate)), "")
        if not path:
            return Config()
    loader, root = _parse(_read(path))
    values = _decode(loader, root)
    if values.get("Version") not in (1, 2):
        raise ConfigError(VERSION_NOT_CORRECT)
    return _build(values)


def validate_config_file(path: str) -> None:
    """Go's checks for a ``-c`` file: a Version key, and no removed, renamed or unknown key."""
    loader, root = _parse(_read(path))
    keys = _flatten(loader, root)
    if keys and "Version" not in keys:
        raise ConfigError(VERSION_MISSING)
    for key in keys:
        if key in _REMOVED_KEYS:
            raise ConfigError(f"{key} flag is not supported any more. {_DOCS}")
        if key in _MIGRATED_KEYS:
            raise ConfigError(f"{key} flag is not supported. {_MIGRATE}")
        if key not in VALID_KEYS:
            raise ConfigError(f"{key} flag is invalid. {_DOCS}")


# --- Reading and parsing. ---


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        # Go opens a directory fine and fails on the read; its errno texts are lower-case.
        verb = "read" if isinstance(exc, IsADirectoryError) else "open"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"{_CONFIG_FLAG_ERROR}{verb} {path}: {_lower_first(reason)}") from exc


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _parse(data: bytes) -> tuple[yaml.SafeLoader, Node | None]:
    """Compose the first YAML document into nodes, which keep line numbers and raw text."""
    try:
        loader = yaml.SafeLoader(data)
        return loader, (loader.get_node() if loader.check_node() else None)
    except yaml.YAMLError as exc:
        raise ConfigError(_CONFIG_FLAG_ERROR + _yaml_error_text(exc)) from exc


# PyYAML words a few common mistakes differently from libyaml, whose texts Go prints.
_LIBYAML_PROBLEMS: Final = {
    "mapping values are not allowed here": "mapping values are not allowed in this context",
}


def _yaml_error_text(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        problem = exc.problem or exc.context or ""
        if exc.context == "while parsing a block mapping" and problem.startswith("expected"):
            problem = "did not find expected key"
        return f"yaml: {where}{_LIBYAML_PROBLEMS.get(problem, problem)}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"yaml: {exc.reason}"
    return f"yaml: {exc}"


def _construct(loader: yaml.SafeLoader, node: Node) -> object:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise ConfigError(_CONFIG_FLAG_ERROR + _yaml_error_text(exc)) from exc


def _is_null(node: Node | None) -> bool:
    return node is None or node.tag == _NULL


# --- Validation: flatten the user's keys one level deep, in file order. ---


def _flatten(loader: yaml.SafeLoader, root: Node | None) -> list[str]:
    if _is_null(root):
        return []
    assert root is not None
    if isinstance(root, SequenceNode):
        raise _unmarshal_errors([_type_error(item, "yaml.MapItem") for item in root.value])
    if not isinstance(root, MappingNode):
        raise _unmarshal_errors([_type_error(root, "yaml.MapSlice")])
    keys = []
    for key_node, value_node in root.value:
        top = _go_text(_construct(loader, key_node))
        if isinstance(value_node, MappingNode):
            keys += [f"{top}.{_go_text(_construct(loader, sub))}" for sub, _ in value_node.value]
        else:
            keys.append(top)
    return keys


def _go_text(value: object) -> str:
    """A decoded YAML key as Go's ``%v`` prints it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_text(item) for item in value) + "]"
    return str(value)


# --- Merge: decode known keys with yaml.v2's type rules, then fill zero values with defaults. ---


class _TypeMismatch(Exception):
    """One yaml.v2 "cannot unmarshal" line; all of them are collected before failing."""


def _decode(loader: yaml.SafeLoader, root: Node | None) -> dict[str, object]:
    """Map each known key present in the file to its value; unknown keys are ignored."""
    values: dict[str, object] = {}
    errors: list[str] = []
    if _is_null(root):
        return values
    assert root is not None
    if not isinstance(root, MappingNode):
        raise _unmarshal_errors([_type_error(root, "cfg.Config")])
    for name, node in _known_entries(root, errors):
        try:
            values[name] = _convert(loader, _KEYS_BY_NAME[name].kind, node)
        except _TypeMismatch as exc:
            errors.append(str(exc))
    if errors:
        raise _unmarshal_errors(errors)
    return values


def _known_entries(root: MappingNode, errors: list[str]) -> list[tuple[str, Node]]:
    """The (key name, value node) pairs Go's struct decoding looks at, in file order."""
    entries = []
    for key_node, node in root.value:
        if not isinstance(key_node, ScalarNode):
            # Go decodes every key of its struct into a string first.
            errors.append(_type_error(key_node, "string"))
            continue
        name = key_node.value
        if name in _GROUP_GO_TYPES:
            if isinstance(node, MappingNode):
                entries += [(f"{name}.{sub.value}", value) for sub, value in node.value]
            elif not _is_null(node):
                errors.append(_type_error(node, _GROUP_GO_TYPES[name]))
        else:
            entries.append((name, node))
    return [(name, node) for name, node in entries if name in _KEYS_BY_NAME]


def _convert(loader: yaml.SafeLoader, kind: _Kind, node: Node) -> object:
    if kind == "strs":
        if _is_null(node):
            return ()
        if not isinstance(node, SequenceNode):
            raise _TypeMismatch(_type_error(node, _GO_TYPES[kind]))
        return tuple(_convert_scalar(loader, "str", item) for item in node.value)
    return _convert_scalar(loader, kind, node)


def _convert_scalar(loader: yaml.SafeLoader, kind: _Kind, node: Node) -> object:
    """yaml.v2's rules: null is the zero value, any scalar fits a string, floats truncate."""
    if _is_null(node):
        return {"int": 0, "str": "", "bool": None}[kind]
    if isinstance(node, ScalarNode):
        if kind == "str":
            return node.value
        if kind == "bool" and node.style is None and node.value in _SHORT_BOOLS:
            return _SHORT_BOOLS[node.value]
        try:
            value = loader.construct_object(node)
        except yaml.constructor.ConstructorError:
            value = None  # an unknown tag such as `!foo 1`: yaml.v2 reports a type error
        if kind == "bool" and isinstance(value, bool):
            return value
        number = _to_int64(value) if kind == "int" else None
        if number is not None:
            return number
    raise _TypeMismatch(_type_error(node, _GO_TYPES[kind]))


def _to_int64(value: object) -> int | None:
    """An int, or a float truncated as yaml.v2 does, when it fits Go's 64-bit int."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    number = int(value)
    return number if number in _INT64 else None


def _type_error(node: Node, go_type: str) -> str:
    """One yaml.v2 type error line: the tag, a clipped value for scalars, the Go type."""
    tag = node.tag
    if tag.startswith(_TAG_PREFIX):
        tag = "!!" + tag.removeprefix(_TAG_PREFIX)
    shown = ""
    if isinstance(node, ScalarNode):
        raw = node.value
        shown = f" `{raw if len(raw) <= 10 else raw[:7] + '...'}`"
    return f"line {node.start_mark.line + 1}: cannot unmarshal {tag}{shown} into {go_type}"


def _unmarshal_errors(lines: list[str]) -> ConfigError:
    return ConfigError(_CONFIG_FLAG_ERROR + "yaml: unmarshal errors:\n  " + "\n  ".join(lines))


def _build(values: dict[str, object]) -> Config:
    """Defaults, with every non-zero value from the file (an explicit ``false`` counts)."""
    changes: dict[str, dict[str, Any]] = {"": {}, "socket": {}, "logging": {}}
    for name, value in values.items():
        key = _KEYS_BY_NAME[name]
        if not key.field or (value is None if key.kind == "bool" else not value):
            continue
        group, _, attr = key.field.rpartition(".")
        changes[group][attr] = value
    config = Config()
    _check_extensions(changes[""])
    return dataclasses.replace(
        config,
        socket=dataclasses.replace(config.socket, **changes["socket"]),
        logging=dataclasses.replace(config.logging, **changes["logging"]),
        **changes[""],
    )


def _check_extensions(top: dict[str, Any]) -> None:
    """Validate the keys Go does not have, and drop repeated sinks."""
    sinks = top.get("sinks")
    if isinstance(sinks, tuple):
        for name in sinks:
            try:
                check_sink(name)
            except ValueError as exc:
                raise ConfigError(f'Sinks value "{name}" is invalid: {exc}.') from exc
        top["sinks"] = tuple(dict.fromkeys(sinks))
    address = top.get("admin_address")
    if isinstance(address, str):
        try:
            check_address(address)
        except ValueError as exc:
            raise ConfigError(f'AdminAddress value "{address}" is invalid: {exc}.') from exc
