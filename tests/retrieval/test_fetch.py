"""Fetching against a real HTTP server on 127.0.0.1: limits, vetted addresses, redirects, robots.txt, conditional GET."""

import gzip
import socket
import time

import pytest

from retrieval import fetch
from retrieval.fetch import Fetcher, FetchError, Policy
from tests.retrieval.webserver import Route
from tests.retrieval.webserver import local_fetcher as fetcher

HTML = frozenset({"text/html"})
PAGE = b"<html><head><title>T</title></head><body><p>Hello.</p></body></html>"


@pytest.mark.parametrize("address, public", [
    ("93.184.216.34", True), ("2606:4700::6810:84e5", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False), ("fe80::1", False),
    ("fc00::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("224.0.0.1", False),
])
def test_which_addresses_are_public(address, public):
    assert fetch.public_address(address) is public


def test_a_page_is_fetched_with_its_type_charset_and_validators(web):
    web.routes["/a"] = Route(PAGE, headers={"Content-Type": "text/html; charset=ISO-8859-1", "ETag": '"v1"',
                                            "Last-Modified": "Mon, 03 Mar 2025 10:00:00 GMT"})
    got = fetcher().get(web.url("/a"), accept=HTML)
    assert (got.status, got.body, got.content_type, got.charset, got.etag) == (200, PAGE, "text/html", "ISO-8859-1",
                                                                                '"v1"')
    assert got.last_modified == "Mon, 03 Mar 2025 10:00:00 GMT"
    headers = dict(web.requests)["/a"]
    assert headers["user-agent"].startswith("citebot/")


def test_loopback_and_private_addresses_are_refused_unless_allowed_and_never_contacted(web):
    web.routes["/a"] = Route(PAGE, headers={"Content-Type": "text/html"})
    with pytest.raises(FetchError, match="private, loopback or link-local.*fetch.allow_private"):
        fetcher(allow_private=False).get(web.url("/a"))
    assert web.requests == []

    def resolves_to(address):
        return lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    for address in ("169.254.169.254", "10.0.0.5", "192.168.0.1"):
        guarded = Fetcher(Policy(allow_private=False, host_interval_s=0), resolve=resolves_to(address))
        with pytest.raises(FetchError, match=address.replace(".", r"\.")):
            guarded.get("http://innocent.example/feed.xml")


def test_a_redirect_to_a_private_address_is_refused_at_that_hop(web, monkeypatch):
    # 127.0.0.1 counts as public here, so that the first hop reaches the test server.
    monkeypatch.setattr(fetch, "public_address", lambda a: a == "127.0.0.1")
    web.routes["/go"] = Route(None, 302, {"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(FetchError, match=r"169\.254\.169\.254.*refused"):
        fetcher(allow_private=False, robots=False).get(web.url("/go"))
    assert web.paths() == ["/go"]


def test_redirects_are_followed_up_to_the_limit(web):
    web.routes["/1"] = Route(None, 301, {"Location": "/2"})
    web.routes["/2"] = Route(None, 302, {"Location": web.url("/page")})
    web.routes["/page"] = Route(PAGE, headers={"Content-Type": "text/html"})
    assert fetcher().get(web.url("/1")).url == web.url("/page")
    web.routes["/loop"] = Route(None, 302, {"Location": "/loop"})
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetcher(max_redirects=3).get(web.url("/loop"))


def test_bad_statuses_types_and_sizes_are_one_line_each(web):
    web.routes["/500"] = Route(b"oops", 500)
    web.routes["/bin"] = Route(bytes(range(256)) * 10, headers={"Content-Type": "application/octet-stream"})
    web.routes["/big"] = Route(b"x" * 5000, headers={"Content-Type": "text/html"})
    web.routes["/liar"] = Route(b"x" * 5000, headers={"Content-Type": "text/html", "Connection": "close"},
                                stream=iter([b"x" * 5000]))
    f = fetcher(max_bytes=1000)
    cases = {"/404": "HTTP 404", "/500": "HTTP 500", "/bin": "application/octet-stream, not text/html",
             "/big": "5,000 bytes, more than the limit of 1,000", "/liar": "more than the limit of 1,000"}
    for path, reason in cases.items():
        with pytest.raises(FetchError, match=reason) as error:
            f.get(web.url(path), accept=HTML)
        assert str(error.value).startswith(web.url(path)) and "\n" not in str(error.value)


def test_a_gzip_bomb_stops_at_the_cap(web):
    bomb = gzip.compress(b"\0" * (200 * 2**20))  # 200 MB of zeros in about 200 kB
    web.routes["/bomb"] = Route(bomb, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
    started = time.monotonic()
    with pytest.raises(FetchError, match="after decompression"):
        fetcher(max_bytes=2**20).get(web.url("/bomb"), accept=HTML)
    assert time.monotonic() - started < 5
    web.routes["/small"] = Route(gzip.compress(PAGE), headers={"Content-Type": "text/html",
                                                               "Content-Encoding": "gzip"})
    assert fetcher().get(web.url("/small")).body == PAGE


def test_a_server_that_trickles_forever_is_cut_off_at_the_time_budget(web):
    web.routes["/slow"] = Route(b"x" * 1000, headers={"Content-Type": "text/html"}, trickle_s=0.05)
    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than 1 s"):
        fetcher(timeout_s=1.0).get(web.url("/slow"))
    assert time.monotonic() - started < 3


def test_conditional_get_returns_not_modified(web):
    def route(handler):
        if handler.headers.get("If-None-Match") == '"v1"':
            return Route(None, 304, {"ETag": '"v1"'})
        return Route(PAGE, headers={"Content-Type": "text/html", "ETag": '"v1"'})

    web.routes["/feed"] = route
    first = fetcher().get(web.url("/feed"))
    again = fetcher().get(web.url("/feed"), etag=first.etag)
    assert (first.status, again.status, again.not_modified, again.body) == (200, 304, True, b"")


def test_robots_txt_is_honoured_and_cached(web):
    web.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"})
    web.routes["/private/a"] = Route(PAGE, headers={"Content-Type": "text/html"})
    web.routes["/public/a"] = Route(PAGE, headers={"Content-Type": "text/html"})
    f = fetcher(robots=True)
    with pytest.raises(FetchError, match="robots.txt does not allow"):
        f.get(web.url("/private/a"))
    assert f.get(web.url("/public/a")).status == 200
    assert f.get(web.url("/public/a")).status == 200
    assert web.paths().count("/robots.txt") == 1
    assert "/private/a" not in web.paths()


def test_a_site_without_robots_txt_may_be_fetched_and_one_that_fails_it_may_not(web):
    web.routes["/a"] = Route(PAGE, headers={"Content-Type": "text/html"})
    assert fetcher(robots=True).get(web.url("/a")).status == 200  # robots.txt: 404
    web.routes["/robots.txt"] = Route(b"down", 503)
    with pytest.raises(FetchError, match="robots.txt does not allow"):
        fetcher(robots=True).get(web.url("/a"))


def test_requests_to_one_host_are_spaced(web):
    web.routes["/a"] = Route(PAGE, headers={"Content-Type": "text/html"})
    f = fetcher(host_interval_s=0.3, robots=False)
    started = time.monotonic()
    for _ in range(3):
        f.get(web.url("/a"))
    assert time.monotonic() - started >= 0.6


def test_only_http_urls_are_fetched():
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://x", "http://"):
        with pytest.raises(FetchError, match="only http and https"):
            fetcher().get(url)
