"""Test pages on their own origin, and tabs that record what the snippet sent.

Tests say exactly which hits went out and which did not, without sleeping: a later hit's
answer shown in the page proves that the earlier requests had left (though not that the
counter has applied them: `Tab.wait_for_answers` waits for that).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import LiveServer


class PageServer:
    """A WSGI app answering every path with the current test page (an SPA would, too)."""

    def __init__(self) -> None:
        self.html = "<!doctype html><title>empty</title>"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        )
        return [self.html.encode()]


@dataclass
class Pages:
    """The test-page origin: `show(html)` sets what every path answers."""

    server: PageServer
    live: LiveServer

    @property
    def url(self) -> str:
        return self.live.url

    def show(self, html: str) -> None:
        self.server.html = html


def embed_page(counter: str, *, site: str = "blog", attrs: str = "data-allow-local") -> str:
    """A page embedding the snippet as the README says, in <head> so it may run early."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A test page</title>
<script async src="{counter}/counter.js" data-site="{site}" {attrs}></script></head>
<body><h1>A test page</h1>
<p><span id="page-count" data-hitcounter></span> views of this page,
<span id="site-count" data-hitcounter="site"></span> in all.</p>
<p><a id="next" href="/next/">next page</a></p></body></html>"""


@dataclass
class Tab:
    """A page plus what it sent to the counter and any script errors it logged."""

    page: Any
    counter: str
    sent: list[tuple[str, str]] = field(default_factory=list)  # (beacon|pixel, path)
    answered: int = 0  # hits sent whose answer has arrived (or that failed)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def watch(self) -> None:
        self.page.on("request", self._on_request)
        self.page.on("requestfinished", self._on_request_done)
        self.page.on("requestfailed", self._on_request_done)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.page.on("console", self._on_console)

    def _on_request(self, request: Any) -> None:
        if not request.url.startswith(self.counter):
            return
        parts = urlsplit(request.url)
        if parts.path == "/api/v1/hit" and request.method == "POST":
            self.sent.append(("beacon", json.loads(request.post_data)["path"]))
        elif parts.path.startswith("/hit/"):
            self.sent.append(("pixel", parse_qs(parts.query)["path"][0]))

    def _on_request_done(self, request: Any) -> None:
        if self._is_hit(request):
            self.answered += 1

    @staticmethod
    def _is_hit(request: Any) -> bool:
        path = urlsplit(request.url).path
        return (path == "/api/v1/hit" and request.method == "POST") or path.startswith("/hit/")

    def wait_for_answers(self, seconds: float = 10) -> None:
        """Wait until every hit sent so far has been answered, so the counter applied it.

        A page's hits travel in parallel: one shown count need not include a hit sent
        just before it.
        """
        deadline = time.monotonic() + seconds
        while self.answered < len(self.sent):
            assert time.monotonic() < deadline, f"{len(self.sent) - self.answered} hits unanswered"
            self.page.wait_for_timeout(20)  # lets Playwright deliver the events

    def _on_console(self, message: Any) -> None:
        self.console.append(message.text)
        if message.type == "error":
            self.console_errors.append(message.text)

    @property
    def paths(self) -> list[str]:
        return [path for _, path in self.sent]


PUBLIC_PAGES = "http://pages.test"
PUBLIC_COUNTER = "http://counter.test"


def serve_under_public_names(page: Any, html: str, counter: str) -> None:
    """Show `html` at PUBLIC_PAGES and proxy PUBLIC_COUNTER to the real counter.

    The localhost skip cannot apply there. Both names are routed in the browser, since a
    page Chromium sees as public may not load from loopback (Private Network Access).
    """
    page.route(f"{PUBLIC_PAGES}/**", lambda route: route.fulfill(body=html))
    page.route(
        f"{PUBLIC_COUNTER}/**",
        lambda route: route.fulfill(
            response=route.fetch(url=route.request.url.replace(PUBLIC_COUNTER, counter, 1))
        ),
    )
