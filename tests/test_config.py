"""Config loading, validation and merging with the Go daemon's rules and texts (pkg/cfg tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xray_trio.config import (
    CONFIG_SEARCH_PATH,
    VALID_KEYS,
    VERSION_MISSING,
    VERSION_NOT_CORRECT,
    CliOverrides,
    Config,
    LoggingConfig,
    SocketConfig,
    apply_cli,
    load_config,
    validate_config_file,
)
from xray_trio.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"
DOCS = "Please refer to AWS X-Ray Documentation for more information."
MIGRATE = "Use X-Ray Daemon Config Migration Script to update the config file. " + DOCS
FLAG_ERROR = "Error occur when using config flag: "

# yaml.v2's names for the Go structs behind Logging and Socket.
LOGGING_STRUCT = (
    '{ LogRotation *bool "yaml:\\"LogRotation\\""; LogLevel string "yaml:\\"LogLevel\\""; '
    'LogPath string "yaml:\\"LogPath\\"" }'
)
SOCKET_STRUCT = (
    '{ UDPAddress string "yaml:\\"UDPAddress\\""; TCPAddress string "yaml:\\"TCPAddress\\"" }'
)

FULL_V2 = """\
TotalBufferSizeMB: 24
Concurrency: 10
Region: us-west-2
Endpoint: https://xxxx.xxxx.com
Socket:
  UDPAddress: 127.0.0.1:3000
  TCPAddress: 127.0.0.2:3000
Logging:
  LogRotation: false
  LogLevel: warn
  LogPath: /var/log/xray.log
LocalMode: true
ResourceARN: arn:aws:ec2:us-east-1:123456789012:instance/i-1
RoleARN: arn:aws:iam::123456789012:role/xray
NoVerifySSL: true
ProxyAddress: https://proxy.example.com:3128
Version: 2
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def config_error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(excinfo.value)


def test_full_v2_file_sets_every_field(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, FULL_V2)) == Config(
        total_buffer_size_mb=24,
        concurrency=10,
        region="us-west-2",
        endpoint="https://xxxx.xxxx.com",
        socket=SocketConfig(udp_address="127.0.0.1:3000", tcp_address="127.0.0.2:3000"),
        logging=LoggingConfig(log_rotation=False, log_level="warn", log_path="/var/log/xray.log"),
        local_mode=True,
        resource_arn="arn:aws:ec2:us-east-1:123456789012:instance/i-1",
        role_arn="arn:aws:iam::123456789012:role/xray",
        no_verify_ssl=True,
        proxy_address="https://proxy.example.com:3128",
        version=2,
    )
    validate_config_file(write(tmp_path, FULL_V2))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Set values are kept, the rest defaulted; an explicit false is kept.
        (
            "Version: 1\nRegion: eu-west-1\nLogging:\n  LogRotation: false\n",
            Config(version=1, region="eu-west-1", logging=LoggingConfig(log_rotation=False)),
        ),
        # A v1 file has no TCPAddress: it takes the default.
        (
            "Version: 1\nSocket:\n  UDPAddress: 0.0.0.0:2000\n",
            Config(version=1, socket=SocketConfig(udp_address="0.0.0.0:2000")),
        ),
        # Zero values mean "default": 0, "" and null.
        ("Version: 2\nConcurrency: 0\nRegion: ''\nSocket:\n", Config(version=2)),
        ("Version: 2\nConcurrency:\nLocalMode: ~\nLogging:\n  LogLevel:\n", Config(version=2)),
        # Negative numbers are kept (Concurrency -1 means no uploaders in Go).
        (
            "Version: 2\nConcurrency: -1\nTotalBufferSizeMB: -5\n",
            Config(version=2, concurrency=-1, total_buffer_size_mb=-5),
        ),
        # yaml.v2 conversions: floats truncate into ints, scalars fit strings as written,
        # y/n are booleans.
        ("Version: 2.9\n", Config(version=2)),
        ("Version: 2\nRegion: 0x10\n", Config(version=2, region="0x10")),
        (
            "Version: 2\nLocalMode: y\nNoVerifySSL: yes\n",
            Config(version=2, local_mode=True, no_verify_ssl=True),
        ),
        (
            "Version: 2\nLogging:\n  LogRotation: N\n",
            Config(version=2, logging=LoggingConfig(log_rotation=False)),
        ),
        # Only the lower-cased ProxyServer keys are Go's, and they are always reset.
        ("Version: 2\nproxyserver:\n  idleconntimeout: 5\n", Config(version=2)),
        # Keys Go does not know are ignored outside validation; the last duplicate wins.
        ("Version: 2\nFoo: 1\nRegion: a\nRegion: b\n", Config(version=2, region="b")),
        # Only the first YAML document counts.
        ("Version: 2\n---\nVersion: 5\n", Config(version=2)),
        # xray-trio's keys.
        (
            "Version: 2\nSinks: [stdout, xray, stdout]\nAdminAddress: 127.0.0.1:2020\n",
            Config(version=2, sinks=("stdout", "xray"), admin_address="127.0.0.1:2020"),
        ),
        ("Version: 2\nSinks: []\nAdminAddress: ''\n", Config(version=2)),
    ],
)
def test_merge_over_defaults(tmp_path: Path, text: str, expected: Config) -> None:
    assert load_config(write(tmp_path, text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Version: 10000\n", VERSION_NOT_CORRECT),
        ("Version: 0\n", VERSION_NOT_CORRECT),
        ("Region: us-east-1\n", VERSION_NOT_CORRECT),  # without -c there is no "missing" check
        ("", VERSION_NOT_CORRECT),
        (
            "TotalBufferSizeMB: NotExist\nVersion: 2\n",
            FLAG_ERROR + "yaml: unmarshal errors:\n"
            "  line 1: cannot unmarshal !!str `NotExist` into int",
        ),
        (
            'Version: "2"\n',
            FLAG_ERROR + "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `2` into int",
        ),
        (
            # Every type error is reported, in file order; long values are clipped.
            "Version: 2\nTotalBufferSizeMB: abcdefghijklmnop\nConcurrency: [1]\n"
            "LocalMode: maybe\nEndpoint: {a: 1}\nNoVerifySSL: 1\n",
            FLAG_ERROR + "yaml: unmarshal errors:\n"
            "  line 2: cannot unmarshal !!str `abcdefg...` into int\n"
            "  line 3: cannot unmarshal !!seq into int\n"
            "  line 4: cannot unmarshal !!str `maybe` into bool\n"
            "  line 5: cannot unmarshal !!map into string\n"
            "  line 6: cannot unmarshal !!int `1` into bool",
        ),
        (
            "Version: 2\nLogging: 3\nSocket: [1]\nproxyserver: x\n",
            FLAG_ERROR + "yaml: unmarshal errors:\n"
            "  line 2: cannot unmarshal !!int `3` into struct "
            + LOGGING_STRUCT
            + "\n  line 3: cannot unmarshal !!seq into struct "
            + SOCKET_STRUCT
            + "\n  line 4: cannot unmarshal !!str `x` into struct "
            "{ IdleConnTimeout int; MaxIdleConnsPerHost int; MaxIdleConns int }",
        ),
        (
            "Version: 2\nLogging:\n  LogLevel:\n    Deep: 1\n",
            FLAG_ERROR + "yaml: unmarshal errors:\n  line 4: cannot unmarshal !!map into string",
        ),
        (
            "Version: 2\nConcurrency: 9223372036854775808\nVersion: true\n",
            FLAG_ERROR + "yaml: unmarshal errors:\n"
            "  line 2: cannot unmarshal !!int `9223372...` into int\n"
            "  line 3: cannot unmarshal !!bool `true` into int",
        ),
        (
            "Version: 2\n[1]: 1\n",
            FLAG_ERROR + "yaml: unmarshal errors:\n  line 2: cannot unmarshal !!seq into string",
        ),
        (
            "a\n",
            FLAG_ERROR
            + "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `a` into cfg.Config",
        ),
        ('"a\n', FLAG_ERROR + "yaml: line 2: found unexpected end of stream"),
        (
            "Version: 2\n  Bad: indentation\n",
            FLAG_ERROR + "yaml: line 2: mapping values are not allowed in this context",
        ),
        (
            "Version: 2\nSinks: [xray, kinesis]\n",
            'Sinks value "kinesis" is invalid: unknown sink (choose xray or stdout).',
        ),
        (
            "Version: 2\nSinks: stdout\n",
            FLAG_ERROR + "yaml: unmarshal errors:\n"
            "  line 2: cannot unmarshal !!str `stdout` into []string",
        ),
        (
            "Version: 2\nAdminAddress: localhost\n",
            'AdminAddress value "localhost" is invalid: want HOST:PORT, e.g. 127.0.0.1:2020.',
        ),
    ],
)
def test_load_errors_carry_go_text(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, text))
    assert config_error(excinfo) == message


def test_missing_file_is_reported_like_go(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(str(tmp_path / "x.yaml"))
    assert config_error(excinfo) == f"{FLAG_ERROR}open {tmp_path}/x.yaml: no such file or directory"


def test_directory_is_reported_as_a_read_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        validate_config_file(str(tmp_path))
    assert config_error(excinfo) == f"{FLAG_ERROR}read {tmp_path}: is a directory"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Region: x\n", VERSION_MISSING),
        ("Version:\n  a: 1\n", VERSION_MISSING),  # only a top-level Version counts
        ("Version: 2\nMemoryLimit: 10\n", f"MemoryLimit flag is not supported. {MIGRATE}"),
        ("Version: 2\nLogRotation: true\n", f"LogRotation flag is not supported. {MIGRATE}"),
        (
            "Version: 2\nProcessor:\n  Region: x\n",
            f"Processor.Region flag is not supported. {MIGRATE}",
        ),
        (
            "Version: 2\nProcessor:\n  Endpoint: x\n",
            f"Processor.Endpoint flag is not supported. {MIGRATE}",
        ),
        (
            "Version: 2\nProcessor:\n  Routine: 1\n",
            f"Processor.Routine flag is not supported. {MIGRATE}",
        ),
        (
            "Version: 2\nSocket:\n  BufferSizeKB: 1\n",
            f"Socket.BufferSizeKB flag is not supported any more. {DOCS}",
        ),
        (
            "Version: 2\nProfile:\n  CPU: true\n",
            f"Profile.CPU flag is not supported any more. {DOCS}",
        ),
        (
            "Version: 2\nProfile:\n  Memory: true\n",
            f"Profile.Memory flag is not supported any more. {DOCS}",
        ),
        (
            "Version: 2\nLogging:\n  LogFormat: x\n",
            f"Logging.LogFormat flag is not supported any more. {DOCS}",
        ),
        (
            "Version: 2\nProcessor:\n  BatchProcessorQueueSize: 1\n",
            f"Processor.BatchProcessorQueueSize flag is not supported any more. {DOCS}",
        ),
        ("Version: 2\nABCDE: 1\n", f"ABCDE flag is invalid. {DOCS}"),
        ("Version: 2\nregion: x\n", f"region flag is invalid. {DOCS}"),  # keys are case-sensitive
        ("Version: 2\nLogging:\n", f"Logging flag is invalid. {DOCS}"),  # a null group is a key
        ("Version: 2\nRegion:\n  x: 1\n", f"Region.x flag is invalid. {DOCS}"),
        ("Version: 2\nLogging:\n  Foo: 1\n", f"Logging.Foo flag is invalid. {DOCS}"),
        (
            "Version: 2\nProxyServer:\n  IdleConnTimeout: 5\n",
            f"ProxyServer.IdleConnTimeout flag is invalid. {DOCS}",
        ),
        ("Version: 2\n1: 2\n", f"1 flag is invalid. {DOCS}"),
        ("Version: 2\n~: 1\n", f"<nil> flag is invalid. {DOCS}"),
        ("Version: 2\ntrue: 1\n", f"true flag is invalid. {DOCS}"),
        # The first offending key in file order wins.
        ("Zed: 1\nMemoryLimit: 2\nVersion: 2\n", f"Zed flag is invalid. {DOCS}"),
        ("Version: 2\nMemoryLimit: 2\nZed: 1\n", f"MemoryLimit flag is not supported. {MIGRATE}"),
        (
            "a\n",
            FLAG_ERROR
            + "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `a` into yaml.MapSlice",
        ),
        (
            "- a\n",
            FLAG_ERROR
            + "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `a` into yaml.MapItem",
        ),
    ],
)
def test_validation_of_a_c_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        validate_config_file(write(tmp_path, text))
    assert config_error(excinfo) == message


@pytest.mark.parametrize(
    "text",
    [
        "",  # passes validation; loading then fails the Version check
        "~\n",
        "Version: 5\n",
        "Version: 2\nproxyserver:\n  idleconntimeout: 1\n  maxidleconnsperhost: 2\n"
        "  maxidleconns: 3\n",
        "Version: 2\nSinks: [stdout]\nAdminAddress: 127.0.0.1:2020\n",
        FULL_V2,
    ],
)
def test_validation_accepts(tmp_path: Path, text: str) -> None:
    validate_config_file(write(tmp_path, text))


def test_valid_keys_are_gos_in_gos_order_then_ours() -> None:
    assert VALID_KEYS == (
        "TotalBufferSizeMB",
        "Concurrency",
        "Endpoint",
        "Region",
        "Socket.UDPAddress",
        "Socket.TCPAddress",
        "proxyserver.idleconntimeout",
        "proxyserver.maxidleconnsperhost",
        "proxyserver.maxidleconns",
        "Logging.LogRotation",
        "Logging.LogLevel",
        "Logging.LogPath",
        "LocalMode",
        "ResourceARN",
        "RoleARN",
        "NoVerifySSL",
        "ProxyAddress",
        "Version",
        "Sinks",
        "AdminAddress",
    )


def test_search_path_is_gos() -> None:
    assert CONFIG_SEARCH_PATH == (
        "/etc/amazon/xray/cfg.yaml",
        "./cfg.yaml",
        "./github.com/aws/aws-xray-daemon/pkg/cfg.yaml",
    )


RELATIVE_SEARCH_PATH = CONFIG_SEARCH_PATH[1:]


def test_no_file_on_the_search_path_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(search_path=RELATIVE_SEARCH_PATH) == Config()


def test_first_file_on_the_search_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "Version: 1\nRegion: deep\n", "github.com/aws/aws-xray-daemon/pkg/cfg.yaml")
    assert load_config(search_path=RELATIVE_SEARCH_PATH).region == "deep"
    write(tmp_path, "Version: 2\nRegion: cwd\n")
    assert load_config(search_path=RELATIVE_SEARCH_PATH).region == "cwd"


def test_search_path_files_are_not_validated_but_need_a_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "Version: 2\nMemoryLimit: 5\nRegion: x\n")
    assert load_config(search_path=RELATIVE_SEARCH_PATH).region == "x"
    write(tmp_path, "MemoryLimit: 5\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(search_path=RELATIVE_SEARCH_PATH)
    assert config_error(excinfo) == VERSION_NOT_CORRECT


FILE = Config(
    version=2,
    region="file-region",
    total_buffer_size_mb=10,
    socket=SocketConfig(udp_address="0.0.0.0:2000"),
    logging=LoggingConfig(log_level="warn", log_path="/file.log"),
    sinks=("stdout",),
)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (CliOverrides(), FILE),
        (
            CliOverrides(region="flag-region", total_buffer_size_mb=0, tcp_address="0.0.0.0:3000"),
            dataclasses.replace(
                FILE,
                region="flag-region",
                total_buffer_size_mb=0,
                socket=SocketConfig(udp_address="0.0.0.0:2000", tcp_address="0.0.0.0:3000"),
            ),
        ),
        # An explicit empty flag still wins (`-f ""` logs to stdout).
        (
            CliOverrides(log_path="", region=""),
            dataclasses.replace(FILE, region="", logging=LoggingConfig(log_level="warn")),
        ),
        (
            CliOverrides(log_level="dev"),
            dataclasses.replace(FILE, logging=LoggingConfig(log_level="dev", log_path="/file.log")),
        ),
        # Go switches level only to one it knows: `-l bogus` keeps the file's level.
        (CliOverrides(log_level="bogus"), FILE),
        (
            CliOverrides(
                local_mode=True,
                resource_arn="a",
                role_arn="r",
                proxy_address="p",
                sinks=("xray",),
                admin_address=":2020",
            ),
            dataclasses.replace(
                FILE,
                local_mode=True,
                resource_arn="a",
                role_arn="r",
                proxy_address="p",
                sinks=("xray",),
                admin_address=":2020",
            ),
        ),
    ],
)
def test_flags_beat_the_file(flags: CliOverrides, expected: Config) -> None:
    assert apply_cli(FILE, flags) == expected


def test_flags_beat_file_beats_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "Version: 2\nRegion: file\nLocalMode: true\n"))
    config = apply_cli(config, CliOverrides(region="flag"))
    assert (config.region, config.local_mode, config.concurrency) == ("flag", True, 8)


def test_example_file_is_valid_and_shows_the_defaults() -> None:
    validate_config_file(str(EXAMPLE))
    assert load_config(str(EXAMPLE)) == Config(version=2)
