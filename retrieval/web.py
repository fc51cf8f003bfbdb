"""Article pages from the web: fetched (retrieval/fetch.py), extracted with trafilatura, keyed by canonical URL.

The same article reached by two links is one document: its key is the page's canonical URL, when
the page names one on its own site, else the URL it was fetched from, normalised (no fragment, no
tracking parameters). A page may not claim another site's URL as its key.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from retrieval import ingest
from retrieval.errors import IngestError
from retrieval.fetch import Fetcher, FetchError
from retrieval.models import Article

PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Query parameters that say how a reader arrived, not which article it is.
TRACKING = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid", "cmpid", "ocid",
                      "smid", "smtyp", "at_medium", "at_campaign", "ito", "ncid"})


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def normalise_url(url: str) -> str:
    """The URL without fragment or tracking parameters (utm_*, fbclid …), scheme and host in lower case."""
    try:
        parts = urlsplit(url.strip())
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if not k.lower().startswith("utm_") and k.lower() not in TRACKING]
        netloc = parts.netloc.lower() if "@" not in parts.netloc else parts.netloc
        return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", urlencode(query), ""))
    except ValueError:
        return url.split("#", 1)[0]


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def canonical_key(fetched: str, declared: str | None) -> str:
    """The page's own canonical URL when it is on the site it was fetched from, else the fetched URL."""
    if declared and is_url(declared) and _site(declared) == _site(fetched):
        return normalise_url(declared)
    return normalise_url(fetched)


def fetch_article(fetcher: Fetcher, url: str, *, outlet: str | None = None) -> Article | IngestError:
    """The article at `url`, or an IngestError saying in one line why there is none."""
    try:
        response = fetcher.get(url, accept=PAGE_TYPES)
    except FetchError as error:
        return IngestError(url, error.reason)
    html = response.text()
    try:
        page = ingest._read_html(html, response.url)
    except Exception as error:  # noqa: BLE001 - a page that breaks the extractor costs that page only
        return IngestError(url, f"cannot be read ({type(error).__name__})")
    if not page.text.strip():
        return IngestError(url, "no article text found on the page")
    key = canonical_key(response.url, page.url)
    return Article(key=key, text=page.text, title=page.title, outlet=outlet or page.outlet,
                   published=page.published, author=page.author, url=key, path=None)
