"""Bot and image-proxy detection from the User-Agent."""

from __future__ import annotations

import threading
from functools import lru_cache

from crawlerdetect import CrawlerDetect

# CrawlerDetect keeps the last match on the instance, so calls are serialised. The cache
# in front of it makes that rare: real traffic repeats a small set of User-Agents.
_detector = CrawlerDetect()
_detector_lock = threading.Lock()


@lru_cache(maxsize=8192)
def is_bot(user_agent: str) -> bool:
    """True for crawlers, spiders, headless browsers and requests with no User-Agent."""
    if not user_agent.strip():
        return True
    with _detector_lock:
        return bool(_detector.isCrawler(user_agent))


def is_image_proxy(user_agent: str, lower_prefixes: tuple[str, ...]) -> bool:
    """True if the request comes through an image proxy such as GitHub's camo (the
    User-Agent starts with one of the prefixes, given in lower case)."""
    return user_agent.lower().startswith(lower_prefixes)
