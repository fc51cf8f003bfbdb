"""Servers that fight back, on 127.0.0.1: headers a byte at a time, gzip that decodes to nothing, resolvers that
never answer, addresses that hide a private one. Each fetch ends by its deadline, with one line saying why."""

import gzip
import os
import socket
import time
import zlib

import pytest

from retrieval import fetch
from retrieval.addresses import public_address
from retrieval.feeds import Feed, FeedBook
from retrieval.fetch import Fetcher, FetchError, Policy
from retrieval.poller import Poller
from tests.retrieval.webserver import Route
from tests.retrieval.webserver import local_fetcher as fetcher

DEADLINE = 1.5
SLACK = 1.0  # a fetch may end this long after its deadline (thread wake-ups, a loaded CI machine)
HARD_STOP_S = 12.0  # the hostile servers give up after this long, so a regression fails instead of hanging
EMPTY_STORED_BLOCK = b"\x00\x00\x00\xff\xff"  # a deflate block holding nothing, and not the last one


def drip(head: bytes, piece: bytes, every_s: float, tail: bytes = b""):
    """`head`, then `piece` every `every_s` until HARD_STOP_S has passed, then `tail`."""
    yield head
    ends = time.monotonic() + HARD_STOP_S
    while time.monotonic() < ends:
        time.sleep(every_s)
        yield piece
    yield tail


def gzip_head() -> bytes:
    return gzip.compress(b"")[:10]  # the 10-byte member header; the deflate stream follows


def timed_failure(url: str, **policy) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        fetcher(timeout_s=DEADLINE, robots=False, **policy).get(url)
    took = time.monotonic() - started
    message = str(error.value)
    print(f"\nfetch-time {url.rsplit('/', 1)[-1]}: {took:.2f} s against a deadline of {DEADLINE} s")
    assert "\n" not in message and message.count("(") == message.count(")")
    return message, took


def test_headers_sent_a_byte_a_second_end_at_the_deadline(web):
    web.routes["/slow-header"] = Route(raw=drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.1, b"\r\n\r\n"))
    message, took = timed_failure(web.url("/slow-header"))
    assert f"took longer than {DEADLINE:g} s" in message and took < DEADLINE + SLACK


def test_many_headers_one_at_a_time_end_at_the_deadline(web):
    web.routes["/many-slow"] = Route(raw=drip(b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n", 0.05, b"\r\n"))
    message, took = timed_failure(web.url("/many-slow"))
    assert f"took longer than {DEADLINE:g} s" in message and took < DEADLINE + SLACK


def test_too_many_headers_are_named_as_a_bad_answer_in_plain_words(web):
    head = b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"Content-Length: 0\r\n\r\n"
    web.routes["/many"] = Route(raw=iter([head]))
    message, _ = timed_failure(web.url("/many"))
    assert message.endswith("the server's answer is not valid HTTP (got more than 100 headers)")


def test_a_gzip_body_sent_a_byte_at_a_time_ends_at_the_deadline(web):
    body = gzip.compress(b"<html><body><p>" + os.urandom(2000).hex().encode() + b"</p></body></html>")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"

    def trickle():  # a byte every 50 ms: the whole body would take minutes
        yield head
        for i in range(len(body)):
            time.sleep(0.05)
            yield body[i:i + 1]

    web.routes["/gzip-drip"] = Route(raw=trickle())
    message, took = timed_failure(web.url("/gzip-drip"))
    assert f"took longer than {DEADLINE:g} s" in message and took < DEADLINE + SLACK


def test_a_gzip_stream_of_empty_blocks_is_capped_in_raw_bytes(web):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"

    def endless():  # 64 MB of nothing, fast; the server stops there so that a regression ends
        yield head + gzip_head()
        block = EMPTY_STORED_BLOCK * (64 * 1024 // len(EMPTY_STORED_BLOCK))
        for _ in range(64 * 2**20 // len(block)):
            yield block

    web.routes["/nothing"] = Route(raw=endless())
    message, took = timed_failure(web.url("/nothing"), max_bytes=2**20)
    assert "more than the limit of 1,048,576" in message
    # The server counts what it wrote, socket buffers included; without the cap it writes all 64 MB.
    assert web.sent < 16 * 2**20, f"the server wrote {web.sent:,} bytes for a body capped at 1 MiB"


def test_a_gzip_stream_of_empty_blocks_sent_slowly_ends_at_the_deadline(web):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"
    web.routes["/nothing-slow"] = Route(raw=drip(head + gzip_head(), EMPTY_STORED_BLOCK, 0.02))
    message, took = timed_failure(web.url("/nothing-slow"))
    assert f"took longer than {DEADLINE:g} s" in message and took < DEADLINE + SLACK


def test_a_body_cut_short_is_refused_not_half_read(web):
    web.routes["/short"] = Route(raw=iter([b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 500\r\n"
                                           b"\r\n<html>only this</html>"]))
    message, _ = timed_failure(web.url("/short"))
    assert "broke off after 22 bytes, 478 short of its Content-Length" in message
    cut = zlib.compress(os.urandom(10_000))[:4000]
    web.routes["/cut-deflate"] = Route(raw=iter([b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: "
                                                 b"deflate\r\nConnection: close\r\n\r\n" + cut]))
    message, _ = timed_failure(web.url("/cut-deflate"))
    assert "deflate body ends early" in message


def test_both_kinds_of_deflate_and_a_gzip_in_two_members_are_read(web):
    text = b"<html><body><p>Deflated.</p></body></html>"
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for path, body, coding in [("/zlib", zlib.compress(text), "deflate"),
                               ("/raw", raw_deflate.compress(text) + raw_deflate.flush(), "deflate"),
                               ("/members", gzip.compress(text[:10]) + gzip.compress(text[10:]), "gzip")]:
        web.routes[path] = Route(body, headers={"Content-Type": "text/html", "Content-Encoding": coding})
        assert fetcher().get(web.url(path)).body == text, path


def test_a_resolver_that_never_answers_ends_at_the_deadline():
    def hangs(*args, **kwargs):
        time.sleep(30)

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 1\.5 s \(resolving slow\.example\)"):
        Fetcher(Policy(timeout_s=DEADLINE, host_interval_s=0, robots=False), resolve=hangs).get("http://slow.example/")
    assert time.monotonic() - started < DEADLINE + SLACK


def test_one_hostile_feed_delays_the_others_by_its_deadline_at_most(web, answerer):
    web.routes["/hostile"] = Route(raw=drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.1, b"\r\n\r\n"))
    page = (b"<html><head><title>Ferry</title></head><body><article><p>Zqferry sailed at noon from the quay. "
            b"It carried forty passengers and their cars.</p></article></body></html>")
    web.routes["/page"] = Route(page, headers={"Content-Type": "text/html"})
    web.routes["/feed"] = Route(f'<?xml version="1.0"?><rss version="2.0"><channel><title>H</title><item><guid>1'
                                f'</guid><title>Ferry</title><link>{web.url("/page")}</link></item></channel>'
                                f'</rss>'.encode(), headers={"Content-Type": "application/rss+xml"})
    book = FeedBook(answerer.settings.index.dir)
    book.add(web.url("/hostile"))
    book.add(web.url("/feed"))
    poller = Poller(answerer.settings, answerer, fetcher=fetcher(timeout_s=DEADLINE, robots=False), book=book)
    started = time.monotonic()
    hostile, good = poller.poll_all()
    took = time.monotonic() - started
    print(f"\nfetch-time poll of a hostile and a good feed: {took:.2f} s against a deadline of {DEADLINE} s")
    assert f"took longer than {DEADLINE:g} s" in hostile.error
    assert (good.error, good.added) == (None, 1)
    assert took < DEADLINE + SLACK + 3  # the good feed's own fetch and commit
    assert book.status(Feed(web.url("/hostile"))).last_error == hostile.error


@pytest.mark.parametrize("address, public", [
    ("192.0.0.8", False), ("192.0.0.9", False), ("192.0.2.1", False), ("198.18.0.1", False), ("198.51.100.7", False),
    ("203.0.113.9", False), ("192.88.99.1", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    ("::a9fe:a9fe", False),  # IPv4-compatible 169.254.169.254
    ("::ffff:169.254.169.254", False), ("::", False), ("fec0::1", False), ("2001::1", False),  # Teredo
    ("2001:db8::1", False), ("3fff::1", False), ("4000::1", False), ("64:ff9b:1::1", False), ("100::1", False),
    ("fe80::1%eth0", False), ("ff02::1", False),
    ("8.8.8.8", True), ("1.1.1.1", True), ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ("2002:5db8:d822::1", True),  # 6to4 of 93.184.216.34
    ("2001:4860:4860::8888", True), ("2a00:1450:4001:82a::200e", True),
])
def test_addresses_are_judged_from_the_special_purpose_registries(address, public):
    assert public_address(address) is public


@pytest.mark.parametrize("target", ["http://192.0.0.8/", "http://[2002:a00:1::1]/", "http://[64:ff9b::a9fe:a9fe]/",
                                    "http://[::a9fe:a9fe]/", "http://[fec0::1]/"])
def test_a_redirect_to_a_hidden_private_address_is_refused_without_a_connection(web, monkeypatch, target):
    monkeypatch.setattr(fetch, "public_address", lambda a: a == "127.0.0.1" or public_address(a))
    attempts = []
    real_connect = socket.socket.connect

    def guard(sock, address):
        attempts.append(address[0])
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a connection to {address[0]} was attempted")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guard)
    web.routes["/go"] = Route(None, 302, {"Location": target})
    with pytest.raises(FetchError, match="refused"):
        fetcher(allow_private=False, robots=False).get(web.url("/go"))
    assert set(attempts) == {"127.0.0.1"}


def test_a_path_with_spaces_and_letters_beyond_ascii_is_sent_percent_encoded(web):
    web.routes["/caf%C3%A9%20news?q=%C3%A9t%C3%A9"] = Route(b"<html>ok</html>", headers={"Content-Type": "text/html"})
    assert fetcher(robots=False).get(web.url("/café news?q=été")).body == b"<html>ok</html>"
    assert web.paths() == ["/caf%C3%A9%20news?q=%C3%A9t%C3%A9"]
