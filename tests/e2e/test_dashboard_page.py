"""The results API's own page (`GET /`), in headless Chromium: it ranks as /v1/top does, and
a word of any length leaves its layout whole (cut with an ellipsis, whole on hover and in
the page's lookup)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.browser import render
from tests.services import TOKEN

pytestmark = pytest.mark.e2e


def _counted(services, text: str) -> None:
    services.client.ingest(text.encode(), name="dashboard")
    services.client.wait_counted(timeout=120)


def test_the_page_ranks_words_as_top_does(services, chromium):
    """Integer-like words ("1") first whatever their counts was a JavaScript object's order.
    Ties go in code point order, as Python's: U+FA0E before U+20000, which UTF-16 puts first."""
    _counted(services, "the " * 6 + "whale " * 5 + "sea " * 4 + "3 2 2 1 bildad ahab \U00020000 \ufa0e")
    top = [[word, str(n)] for word, n in services.client.top(20)["counts"].items()]
    rows, _ = render(
        chromium,
        f"{services.results_url}/#token={TOKEN}",
        "(() => { const rows = [...document.querySelectorAll('#top tr')]"
        "  .map(r => [...r.cells].slice(1, 3).map(c => c.textContent));"
        f"  return rows.length === {len(top)} && rows; }})()",
    )
    assert rows == top
    assert top[:3] == [["the", "6"], ["whale", "5"], ["sea", "4"]]


LONG = "x" * 64_000


def test_a_long_word_is_cut_to_fit_and_whole_on_hover_and_in_the_lookup(services, chromium, tmp_path):
    _counted(services, f"{LONG} short")
    url = f"{services.results_url}/#token={TOKEN}"
    page, _ = render(
        chromium,
        url,
        "(() => { const cell = [...document.querySelectorAll('#top tr')].map(r => r.cells[1])"
        f"  .find(c => c.textContent === '{LONG}');"
        "  return cell && {page: document.documentElement.scrollWidth, window: innerWidth,"
        "    cell: cell.getBoundingClientRect().width, title: cell.querySelector('[title]')?.title}; })()",
    )
    assert page["page"] <= page["window"], f"a 64,000-character word makes the page {page['page']} px wide"
    assert page["cell"] < 500 and page.get("title") == LONG, {**page, "title": page.get("title", "")[:20]}
    # A click on the word looks it up: the whole word is asked, and its answer titled with it.
    lookup, png = render(
        chromium,
        url,
        "(() => { const cell = [...document.querySelectorAll('#top [title]')].find(c => c.title.length === 64000);"
        "  if (cell && !window.clicked) { window.clicked = true; cell.click(); }"
        "  const answered = document.getElementById('answered');"
        "  return answered?.title && {asked: document.getElementById('ask').value, answered: answered.title,"
        "    count: document.getElementById('answer-count').textContent,"
        "    page: document.documentElement.scrollWidth, window: innerWidth}; })()",
    )
    assert lookup["asked"] == lookup["answered"] == LONG and lookup["count"] == "1"
    assert lookup["page"] <= lookup["window"]
    shot = Path(os.environ.get("WORDPIPE_SCREENSHOT_DIR", tmp_path)) / "dashboard-long-word.png"
    shot.write_bytes(png)
