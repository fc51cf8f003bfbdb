"""HTTP GET for a web that may be hostile: every limit checked, every address vetted, nothing half-read.

- Only http and https. Each hop's host is resolved here and every address it resolves to must be
  public (not private, loopback, link-local, shared or reserved) unless `allow_private` is set; the
  connection goes to the vetted address, so a DNS answer cannot change between check and use.
- Redirects are followed by hand, at most `max_redirects`, each hop vetted again.
- A time budget for the whole fetch (resolving, connecting, headers, body, decoding), enforced from
  outside the read: a server sending a byte a second is cut off at the deadline, not per receive.
- Size caps on the raw body and on the decoded body (a gzip bomb stops at the cap, and so does a gzip
  stream that decodes to nothing), the content types the caller accepts, conditional GET.
- robots.txt is honoured per host (cached), and requests to one host are spaced by `host_interval_s`.
Every failure is a FetchError naming the URL and the reason in one line.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

from retrieval.addresses import public_address
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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(url, "only http and https URLs can be fetched")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError(url, "the port is not a number") from None
        address = self._vet(url, host, port, deadline)
        self._wait_turn(host)
        if deadline - time.monotonic() <= 0:
            raise FetchError(url, f"took longer than {self.policy.timeout_s:g} s")
        default_port = port == (443 if parts.scheme == "https" else 80)
        name = _ascii_host(host)
        sent = {"Host": name if default_port else f"{name}:{port}", "User-Agent": self.policy.user_agent,
                "Accept-Encoding": "gzip, deflate", **headers}
        # A path written with spaces or non-ASCII letters is sent percent-encoded, as a browser sends it.
        target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE)
        watchdog = _Watchdog(deadline)
        sock = connection = None
        try:
            sock = _connect(address, port, host if parts.scheme == "https" else None, deadline, watchdog)
            connection = http.client.HTTPConnection(host, port)
            connection.sock = sock
            connection.request("GET", target, headers=sent)
            response = connection.getresponse()
            if watchdog.expired():  # the headers were cut off at the deadline: whatever was read is not the answer
                raise FetchError(url, f"took longer than {self.policy.timeout_s:g} s")
            got = {k.lower(): v for k, v in response.getheaders()}
            if response.status != 200:
                return response.status, got, b""
            media = (got.get("content-type") or "").partition(";")[0].strip().lower()
            if accept is not None and media not in accept:
                raise _wrong_type(url, media, accept)  # before a byte of the body is read
            return response.status, got, _read_body(url, response, got, limit, watchdog, self.policy.timeout_s)
        except FetchError:
            raise
        except Exception as error:  # noqa: BLE001 - sockets, TLS and http.client each raise their own kinds
            if watchdog.expired():
                raise FetchError(url, f"took longer than {self.policy.timeout_s:g} s") from None
            raise FetchError(url, _failure(error)) from None
        finally:
            watchdog.cancel()
            if connection is not None:
                connection.close()
            elif sock is not None:
                sock.close()

    def _vet(self, url: str, host: str, port: int, deadline: float) -> str:
        """The address to connect to; FetchError if the host resolves to a non-public one (unless allowed)."""
        try:
            found = _within(deadline, self.resolve, host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise FetchError(url, f"took longer than {self.policy.timeout_s:g} s (resolving {host})") from None
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


_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _ascii_host(host: str) -> str:
    """The host as sent in the Host header: an internationalised name in its IDNA (xn--) form."""
    try:
        return host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        return host.encode("ascii", "backslashreplace").decode("ascii")


def _wrong_type(url: str, media: str, accept: frozenset[str]) -> FetchError:
    return FetchError(url, f"is {media or 'of no content type'}, not {' or '.join(sorted(accept))}")


class _Watchdog:
    """Shuts the fetch's socket at its deadline, whatever the read is doing at that moment.

    A socket's timeout counts per receive: a server sending a byte a second (in the headers, in a
    gzip stream that decodes to nothing) would never trip it. Shutting the socket from a timer
    thread wakes any blocked read with an end of stream, so the deadline covers the whole fetch.
    """

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown, also for a TLS socket: no TLS close_notify from another thread
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


IDLE_S = 10.0  # no byte for this long is a dead server, whatever the time budget left


def _connect(address: str, port: int, tls_host: str | None, deadline: float, watchdog: _Watchdog):
    """A socket connected to the vetted address (TLS checked against `tls_host`), under the watchdog."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        watchdog.watch(sock)
        sock.settimeout(max(0.01, min(deadline - time.monotonic(), IDLE_S)))
        sock.connect((address, port))
        if tls_host is None:
            return sock
        context = ssl.create_default_context()
        secure = context.wrap_socket(sock, server_hostname=tls_host, do_handshake_on_connect=False)
        watchdog.watch(secure)
        secure.do_handshake()
        return secure
    except BaseException:
        sock.close()
        raise


def _raw_cap(limit: int) -> int:
    """Bytes taken off the wire for a body of at most `limit` bytes: compressed data may be a little bigger."""
    return limit + limit // 64 + 4096


class _Decoder:
    """Content-Encoding gzip or deflate undone, the output capped: `take(data, room)` never yields more
    than room + 1 bytes, so a bomb stops at the cap however well it compresses."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        # gzip now; deflate once its first bytes tell zlib-wrapped from raw (`take`); identity never.
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        self._pending = b""  # deflate: the first bytes, until they tell zlib-wrapped from raw

    def take(self, data: bytes, room: int) -> bytes:
        if self.encoding == "identity":
            return data
        if self._inflate is None:  # deflate: servers send zlib-wrapped (as the RFC says) or raw
            data = self._pending + data
            if len(data) < 2:
                self._pending = data
                return b""
            wrapped = data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out = self._inflate.decompress(data, room + 1)
        while self._inflate.eof and self._inflate.unused_data and len(out) <= room and self.encoding == "gzip":
            rest = self._inflate.unused_data  # a second gzip member follows the first
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self._inflate.decompress(rest, room + 1 - len(out))
        return out

    def complete(self) -> bool:
        return self.encoding == "identity" or (self._inflate is not None and self._inflate.eof)


def _read_body(url: str, response, got: dict, limit: int, watchdog: _Watchdog, timeout_s: float) -> bytes:
    """The body, decoded, with the raw bytes, the decoded bytes and the time all capped."""
    codings = [c.strip().lower() for c in (got.get("content-encoding") or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > 1 or codings and codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise FetchError(url, f"is encoded as {', '.join(codings)}, which citebot did not ask for")
    decoder = _Decoder({"x-gzip": "gzip"}.get(codings[0], codings[0]) if codings else "identity")
    raw_cap = _raw_cap(limit)
    declared = got.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > (raw_cap if codings else limit):  # refused before it is read
        raise FetchError(url, f"is {int(declared):,} bytes, more than the limit of {limit:,}")
    body, raw = bytearray(), 0
    try:
        while True:
            # read1: what has arrived, so that a server sending a byte a second meets the deadline
            block = response.read1(READ_BLOCK)
            if watchdog.expired():
                raise FetchError(url, f"took longer than {timeout_s:g} s")
            if not block:
                break
            raw += len(block)
            if raw > raw_cap:
                raise FetchError(url, f"sent more than {raw_cap:,} bytes, more than the limit of {limit:,}")
            body += decoder.take(block, limit - len(body))
            if len(body) > limit:
                raise FetchError(url, f"is more than the limit of {limit:,} bytes (after decompression)")
    except zlib.error as error:
        raise FetchError(url, f"sent a broken {decoder.encoding} body ({error})") from None
    except http.client.IncompleteRead as error:
        raise FetchError(url, f"broke off after {len(error.partial):,} bytes of a chunk") from None
    if response.length:  # Content-Length promised more than came
        raise FetchError(url, f"broke off after {raw:,} bytes, {response.length:,} short of its Content-Length")
    if not decoder.complete() and (body or raw):
        raise FetchError(url, f"broke off: its {decoder.encoding} body ends early")
    return bytes(body)


def _within(deadline: float, call, *args, **kwargs):
    """call(*args, **kwargs) in a thread, given up (TimeoutError) at the deadline: getaddrinfo cannot be
    interrupted, and a resolver that never answers must not hold the fetch past its budget."""
    done = threading.Event()
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error
        done.set()

    threading.Thread(target=run, daemon=True, name="citebot-resolve").start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _failure(error: BaseException) -> str:
    """One line for what went wrong on the wire, in words a user can act on."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its TLS certificate was refused ({error.verify_message or error.reason})"
    if isinstance(error, ssl.SSLError):
        return f"the TLS handshake failed ({error.reason or error})"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"the server sent nothing for {IDLE_S:g} s"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    if isinstance(error, http.client.HTTPException):
        detail = str(error).strip() or type(error).__name__
        return f"the server's answer is not valid HTTP ({detail[:120]})"
    if isinstance(error, ConnectionRefusedError):
        return "cannot connect (connection refused)"
    if isinstance(error, OSError):
        return f"cannot connect ({error.strerror or type(error).__name__})"
    return f"failed ({type(error).__name__}: {str(error)[:120]})"
