"""Which HTTP proxy X-Ray calls go through, and refusing one that cannot work.

Proxy choice follows the Go daemon where it is sound and fixes it where users asked: ``-p`` /
``ProxyAddress`` applies to every X-Ray call; without it the environment's ``HTTPS_PROXY`` /
``HTTP_PROXY`` are used and, unlike Go (issue #12), ``NO_PROXY`` is honoured. A proxy URL that
cannot work is refused at start-up, as Go does, rather than failing every upload later.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import TYPE_CHECKING

from xray_trio.errors import StartupError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from xray_trio.config import Config

_ENV_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_HOST_NAME = re.compile(r"[A-Za-z0-9._~-]+")


def check_proxy_url(value: str, *, scheme_required: bool = True) -> str:
    """Return ``value`` if it names a usable HTTP(S) proxy, else raise ``StartupError``.

    The messages follow Go's ``url.Parse`` (``parse "<url>": <reason>``). httpx itself accepts
    some of these (it percent-encodes a space in the host name), and would then fail every call.
    ``scheme_required=False`` allows the bare ``host:port`` that curl and httpx accept in the
    environment; Go requires a scheme everywhere, but refusing to start over an environment
    variable other tools accept would only surprise.
    """
    url = value if scheme_required or "://" in value else f"http://{value}"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # a bracketed host that is not an IPv6 address
        raise StartupError(f'Bad proxy URL: parse "{value}": invalid IPv6 host: {exc}') from None
    if parts.scheme not in ("http", "https"):
        reason = (
            "first path segment in URL cannot contain colon"
            if "://" not in value and ":" in value
            else f"unsupported proxy scheme {parts.scheme!r}, expected http or https"
        )
        raise StartupError(f'Bad proxy URL: parse "{value}": {reason}')
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        literal, _, port = host[1:].partition("]")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise StartupError(
                f'Bad proxy URL: parse "{value}": invalid IPv6 host {literal!r}'
            ) from None
    else:
        host, _, port = host.partition(":")
        if "%" in host:
            raise StartupError(f'Bad proxy URL: parse "{value}": invalid URL escape in host')
        if not _HOST_NAME.fullmatch(host):
            raise StartupError(
                f'Bad proxy URL: parse "{value}": invalid character in host name {host!r}'
            )
    port = port.removeprefix(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise StartupError(f'Bad proxy URL: parse "{value}": invalid port {port!r}')
    return url


def check_environment_proxies(env: Mapping[str, str]) -> None:
    """Refuse to start with an environment proxy httpx would silently mangle."""
    for name in _ENV_PROXIES:
        if env.get(name):
            check_proxy_url(env[name], scheme_required=False)


def uses_proxy(config: Config, env: Mapping[str, str]) -> bool:
    """Whether any X-Ray call may go through an HTTP proxy (``-p`` or the environment)."""
    return bool(config.proxy_address) or any(env.get(name) for name in _ENV_PROXIES)
