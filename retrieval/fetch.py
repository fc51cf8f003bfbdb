"""HTTP GET for a web that may be hostile: every limit checked, every address vetted, nothing half-read.

- Only http and https. Each hop's host is resolved here and every address it resolves to must be
  public (not private, loopback, link-local, shared or reserved) unless `allow_private` is set; the
  connection goes to the vetted address, so a DNS answer cannot change between check and use.
- Redirects are followed by hand, at most `max_redirects`, each hop vetted again.
- A time budget for the whole fetch, a size cap on the body after decompression (a gzip bomb
  stops at the cap), the content types the caller accepts, conditional GET (ETag, Last-Modified).
- robots.txt is honoured per host (cached), and requests to one host are spaced by `host_interval_s`.
Every failure is a FetchError naming the URL and the reason in one line.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from retrieval.errors import CitebotError

log = logging.getLogger(__name__)

READ_BLOCK = 64 * 1024
ROBOTS_MAX_BYTES = 512 * 1024
ROBOTS_TTL_S = 24 * 3600.0
ROBOTS_RETRY_S = 600.0
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(CitebotError):
    """A URL could not be fetched; the message says which and why."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Policy:
    timeout_s: float = 20.0
    max_bytes: int = 5 * 2**20
    max_redirects: int = 5
    allow_private: bool = False
    user_agent: str = "citebot/0.1"
    host_interval_s: float = 1.0
    robots: bool = True


@dataclass(frozen=True)
class Response:
    url: str  # after redirects
    status: int  # 200, or 304 when a conditional GET found nothing new
    body: bytes = b""
    content_type: str = ""  # the media type, lower case, no parameters
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        return self.body.decode(self.charset or "utf-8", errors="replace")


def public_address(address: str) -> bool:
    """True for an address on the public internet (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass
class _Robots:
    parser: object | None  # a Protego parser; None means "everything allowed"
    allow_all: bool
    until: float


@dataclass
class Fetcher:
    """Fetches under one Policy; thread-safe. `resolve` is socket.getaddrinfo, replaceable in tests."""

    policy: Policy = field(default_factory=Policy)
    resolve: object = socket.getaddrinfo
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_at: dict = field(default_factory=dict, repr=False)
    _robots: dict = field(default_factory=dict, repr=False)

    def get(self, url: str, *, accept: frozenset[str] | None = None, etag: str | None = None,
            modified: str | None = None, sniff=None, max_bytes: int | None = None) -> Response:
        """GET `url` (following vetted redirects). `accept`: media types taken (None: any);
        `sniff(body) -> bool` may accept a body whose declared type is not in `accept`;
        `max_bytes` overrides the policy's cap for this fetch."""
        deadline = time.monotonic() + self.policy.timeout_s
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        response = self._follow(url, headers, deadline, max_bytes or self.policy.max_bytes, accept, sniff)
        if response.not_modified:
            return response
        if accept is not None and response.content_type not in accept and not sniff(response.body):
            raise _wrong_type(response.url, response.content_type, accept)
        return response

    # -- hops -----------------------------------------------------------------------------------
    def _follow(self, url: str, headers: dict, deadline: float, limit: int, accept=None, sniff=None) -> Response:
        current = url
        for _ in range(self.policy.max_redirects + 1):
            if self.policy.robots:
                self._check_robots(current, deadline)
            status, got, body = self._hop(current, headers, deadline, limit, None if sniff else accept)
            if status in REDIRECTS:
                location = got.get("location")
                if not location:
                    raise FetchError(current, f"HTTP {status} without a Location")
                current = urljoin(current, location)
                continue
            if status == 304 and ("If-None-Match" in headers or "If-Modified-Since" in headers):
                return Response(current, 304, etag=got.get("etag"), last_modified=got.get("last-modified"))
            if status != 200:
                raise FetchError(current, f"HTTP {status}")
            media, _, params = (got.get("content-type") or "").partition(";")
            charset = None
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key.lower() == "charset" and value:
                    charset = value.strip("\"'") or None
            return Response(current, 200, body, media.strip().lower(), charset, got.get("etag"),
                            got.get("last-modified"))
        raise FetchError(url, f"more than {self.policy.max_redirects} redirects")

    def _hop(self, url: str, headers: dict, deadline: float, limit: int, accept=None):
        import urllib3

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(url, "only http and https URLs can be fetched")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError(url, "the port is not a number") from None
        address = self._vet(url, host, port)
        self._wait_turn(host)
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(url, f"took longer than {self.policy.timeout_s:g} s")
        timeout = urllib3.Timeout(connect=min(left, 10.0), read=min(left, 10.0))
        common = dict(port=port, timeout=timeout, retries=False, maxsize=1, block=False)
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(address, server_hostname=host, assert_hostname=host,
                                               cert_reqs="CERT_REQUIRED", **common)
        else:
            pool = urllib3.HTTPConnectionPool(address, **common)
        default_port = port == (443 if parts.scheme == "https" else 80)
        sent = {"Host": host if default_port else f"{host}:{port}", "User-Agent": self.policy.user_agent,
                "Accept-Encoding": "gzip, deflate", **headers}
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            response = pool.urlopen("GET", target, headers=sent, redirect=False, preload_content=False,
                                    assert_same_host=False, decode_content=True)
        except urllib3.exceptions.HTTPError as error:
            raise FetchError(url, f"cannot connect ({_reason(error)})") from None
        try:
            got = {k.lower(): v for k, v in response.headers.items()}
            if response.status != 200:
                return response.status, got, b""
            media = (got.get("content-type") or "").partition(";")[0].strip().lower()
            if accept is not None and media not in accept:
                raise _wrong_type(url, media, accept)  # before a byte of the body is read
            declared = got.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise FetchError(url, f"is {int(declared):,} bytes, more than the limit of {limit:,}")
            body = bytearray()
            while True:
                try:  # read1: what has arrived, so that a server sending a byte a second meets the deadline
                    block = response.read1(READ_BLOCK)
                except urllib3.exceptions.HTTPError as error:
                    raise FetchError(url, f"broke off while reading ({_reason(error)})") from None
                if not block:
                    break
                body += block
                if len(body) > limit:
                    raise FetchError(url, f"is more than the limit of {limit:,} bytes (after decompression)")
                if time.monotonic() > deadline:
                    raise FetchError(url, f"took longer than {self.policy.timeout_s:g} s")
            return response.status, got, bytes(body)
        finally:
            response.release_conn()
            pool.close()

    def _vet(self, url: str, host: str, port: int) -> str:
        """The address to connect to; FetchError if the host resolves to a non-public one (unless allowed)."""
        try:
            found = self.resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise FetchError(url, f"cannot resolve {host} ({error})") from None
        addresses = list(dict.fromkeys(info[4][0] for info in found))
        if not addresses:
            raise FetchError(url, f"cannot resolve {host}")
        if not self.policy.allow_private:
            private = [a for a in addresses if not public_address(a)]
            if private:
                raise FetchError(url, f"{host} is a private, loopback or link-local address ({private[0]}): "
                                      "refused (set fetch.allow_private to allow it)")
        return addresses[0]

    def _wait_turn(self, host: str) -> None:
        interval = self.policy.host_interval_s
        if interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next_at.get(host, 0.0))
            self._next_at[host] = at + interval
        if at > now:
            time.sleep(at - now)

    # -- robots.txt -----------------------------------------------------------------------------
    def _check_robots(self, url: str, deadline: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(url, "only http and https URLs can be fetched")
        site = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            rules = self._robots.get(site)
        if rules is None or rules.until < time.monotonic():
            rules = self._load_robots(site, deadline)
            with self._lock:
                self._robots[site] = rules
        if rules.allow_all:
            return
        if rules.parser is None or not rules.parser.can_fetch(url, self.policy.user_agent):
            raise FetchError(url, "robots.txt does not allow citebot to fetch it")

    def _load_robots(self, site: str, deadline: float) -> _Robots:
        from protego import Protego

        now = time.monotonic()
        try:
            status, _, body = self._hop(f"{site}/robots.txt", {}, deadline, ROBOTS_MAX_BYTES)
        except FetchError as error:
            if "private" in error.reason:
                raise
            log.info("robots.txt of %s unreadable (%s): not fetching from it for now", site, error.reason)
            return _Robots(None, False, now + ROBOTS_RETRY_S)
        if status in REDIRECTS or 400 <= status < 500:
            return _Robots(None, True, now + ROBOTS_TTL_S)  # no robots.txt: everything allowed
        if status != 200:
            log.info("robots.txt of %s answered HTTP %d: not fetching from it for now", site, status)
            return _Robots(None, False, now + ROBOTS_RETRY_S)
        return _Robots(Protego.parse(body.decode("utf-8", errors="replace")), False, now + ROBOTS_TTL_S)


def _wrong_type(url: str, media: str, accept: frozenset[str]) -> FetchError:
    return FetchError(url, f"is {media or 'of no content type'}, not {' or '.join(sorted(accept))}")


def _reason(error: Exception) -> str:
    """urllib3's nested messages, shortened to their last part."""
    text = str(getattr(error, "reason", None) or error)
    return text.rsplit(": ", 1)[-1].strip(" ')\"") or type(error).__name__
