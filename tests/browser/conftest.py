"""Browser fixtures: the counter on one loopback port, test pages on another (two origins)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tests.browser.harness import Pages, PageServer, Tab
from tests.conftest import serve_in_thread

# The test modules import Playwright: without it they are skipped, like the `browser`
# fixture does, or they fail when CI demands a browser.
if importlib.util.find_spec("playwright") is None:
    if os.environ.get("HITCOUNTER_REQUIRE_BROWSER") == "1":
        raise RuntimeError("Playwright is required (HITCOUNTER_REQUIRE_BROWSER=1)")
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def _patient_expect() -> None:
    """Network effects may take a moment on a loaded CI machine; waits are not timings."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)


@pytest.fixture
def counter(app: Flask) -> Iterator[str]:
    """The counter app (fakeredis, no site cache) served on its own loopback port."""
    live = serve_in_thread(app)
    yield live.url
    live.stop()


@pytest.fixture
def pages() -> Iterator[Pages]:
    server = PageServer()
    live = serve_in_thread(server)
    yield Pages(server, live)
    live.stop()


@pytest.fixture
def tab(browser_context: Any, counter: str) -> Iterator[Tab]:
    """A fresh page in a fresh profile; it must end with no uncaught script error."""
    tab = Tab(browser_context.new_page(), counter)
    tab.page.set_default_timeout(10_000)
    tab.watch()
    yield tab
    assert tab.page_errors == []
