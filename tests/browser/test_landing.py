"""The landing page in Chromium: its demo counter is the snippet, counting the page itself."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from hitcounter.store import Store
from tests.browser.harness import Tab
from tests.conftest import BROWSER_UA

pytestmark = pytest.mark.browser


def test_the_demo_counter_shows_the_landing_pages_own_views(tab: Tab, fake_store: Store) -> None:
    page = tab.page
    with page.expect_response(f"{tab.counter}/api/v1/hit") as answer:
        page.goto(f"{tab.counter}/")
    assert answer.value.status == 200
    expect(page.locator("#demo [data-hitcounter]")).to_have_text("1")
    assert fake_store.page_count("demo", "/")[0] == 1
    # The example badge and digit counter are real images of the demo site (not counted).
    for image in page.locator(".preview img").all():
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0
    assert fake_store.page_count("demo", "/")[0] == 1
    assert tab.console_errors == []


@pytest.mark.parametrize("width", [360, 1280])
def test_the_landing_page_fits_the_screen(
    browser: Any, counter: str, fake_store: Store, width: int
) -> None:
    context = browser.new_context(user_agent=BROWSER_UA, viewport={"width": width, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{counter}/")
        expect(page.locator("#demo [data-hitcounter]")).not_to_be_empty()
        # Nothing sticks out sideways: long code wraps inside its block.
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    finally:
        context.close()
