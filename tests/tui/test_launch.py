"""``xray-trio inspect`` command line: the daemon's flags plus --attach."""

from __future__ import annotations

import io

import pytest

from xray_trio import __version__
from xray_trio.tui.launch import launch, split_attach


@pytest.mark.parametrize(
    ("argv", "address", "rest"),
    [
        ([], None, []),
        (["--attach", "127.0.0.1:2020"], "127.0.0.1:2020", []),
        (["-attach=localhost:9"], "localhost:9", []),
        (
            ["-o", "--attach", ":2020", "-b", "127.0.0.1:2900"],
            ":2020",
            ["-o", "-b", "127.0.0.1:2900"],
        ),
        (["-o", "--", "--attach", "x"], None, ["-o", "--", "--attach", "x"]),
    ],
)
def test_split_attach(argv, address, rest):
    assert split_attach(argv) == (address, rest)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attach"], "flag needs an argument: -attach\n"),
        (["--attach", "nope"], 'invalid value "nope" for flag -attach: want HOST:PORT'),
        (["-x"], "flag provided but not defined: -x\n"),
    ],
)
def test_flag_errors_exit_2_with_usage(argv, message):
    out, err = io.StringIO(), io.StringIO()
    assert launch(argv, stdout=out, stderr=err) == 2
    assert err.getvalue().startswith(message)
    assert out.getvalue().startswith("Usage: xray-trio inspect [options]")
    assert "-b\t--bind" in out.getvalue()


def test_help_and_version():
    out = io.StringIO()
    assert launch(["-h"], stdout=out, stderr=io.StringIO()) == 0
    assert "--attach" in out.getvalue()
    out = io.StringIO()
    assert launch(["-v"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue() == f"AWS X-Ray daemon version: {__version__}\n"


def test_a_bad_config_file_exits_1(tmp_path):
    err = io.StringIO()
    assert launch(["-c", str(tmp_path / "missing.yaml")], stdout=io.StringIO(), stderr=err) == 1
    assert "[Error]" in err.getvalue()
