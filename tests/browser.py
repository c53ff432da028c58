"""The report in a real browser: headless Chromium through Selenium, for the report tests."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def gallery_shot(name: str, width: int) -> Path | None:
    """Where a browser test saves its full-page screenshot: ``$TRAINLAB_GALLERY/NAME.png`` for the
    1280-pixel window when that variable is set (``docs/gallery`` is made so), else nowhere."""
    folder = os.environ.get("TRAINLAB_GALLERY")
    return Path(folder) / f"{name}.png" if folder and width == 1280 else None


def in_chromium(html: Path, script: str, width: int = 1280, screenshot: Path | None = None):
    """Open ``html`` in headless Chromium ``width`` pixels wide: the result of ``script``, the console's
    warnings and errors, and the page title; with ``screenshot``, the whole page saved there as PNG."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(html.resolve().as_uri())
        result = driver.execute_script(script)
        if screenshot:
            driver.set_window_size(width, driver.execute_script("return document.documentElement.scrollHeight"))
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        title = driver.title
    finally:
        driver.quit()
    return result, errors, title


# The page's layout as the browser drew it: horizontal overflow, figures wider than their column,
# and pairs of text blocks (headings, paragraphs, cells, captions) that overlap without one holding the other.
LAYOUT = """
const page = document.documentElement;
const wide = Array.from(document.images).filter(
    i => i.getBoundingClientRect().width > i.parentElement.getBoundingClientRect().width + 1).length;
const blocks = Array.from(document.querySelectorAll("h1, h2, p, li, th, td, figcaption, caption"));
const overlaps = [];
for (let i = 0; i < blocks.length; i++) {
  for (let j = i + 1; j < blocks.length; j++) {
    const a = blocks[i], b = blocks[j];
    if (a.contains(b) || b.contains(a)) continue;
    const r = a.getBoundingClientRect(), s = b.getBoundingClientRect();
    const w = Math.min(r.right, s.right) - Math.max(r.left, s.left);
    const h = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
    if (w > 1 && h > 1) overlaps.push([a.textContent.slice(0, 40), b.textContent.slice(0, 40)]);
  }
}
return [page.scrollWidth - page.clientWidth, wide, overlaps, blocks.length];
"""




# Per gallery of pictures (a variant each), how many columns the browser laid its pictures out in.
GALLERY_COLUMNS = """
return Array.from(document.querySelectorAll(".cells")).map(
    g => new Set(Array.from(g.querySelectorAll("img")).map(i => Math.round(i.getBoundingClientRect().left))).size);
"""

# Click the first picture of the first gallery: its width before and after, and the gallery's width.
ENLARGE = """
const cells = document.querySelector(".cells"), image = cells.querySelector("img");
const before = image.getBoundingClientRect().width;
image.click();
return [before, image.getBoundingClientRect().width, cells.getBoundingClientRect().width];
"""
