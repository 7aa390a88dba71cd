"""The annotator's screen in a real headless browser: Playwright driving Debian's chromium
(scripts/setup_browser.sh; never a browser Playwright would download), logged into the test
session's Label Studio as its admin."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"  # screenshots kept after the run (git-ignored)


@dataclass(frozen=True)
class Screen:
    """What the labeling page showed: the classes ticked, the page's text, the screenshot."""

    ticked: list[str]
    text: str
    screenshot: Path


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        subprocess.run(["bash", str(REPO / "scripts/setup_browser.sh")], capture_output=True,
                       timeout=600)
        found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is missing and scripts/setup_browser.sh could not install it",
                    pytrace=False)
    return found


def open_task(studio_server, project_id: int, task_id: int, *, shot: str,
              expect: str) -> Screen:
    """Log in, open the task's labeling page, wait for the text ``expect``, and read it."""
    from playwright.sync_api import sync_playwright

    password = (studio_server.data_dir / "password").read_text().strip()
    username = "admin@labelloop.local"
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{shot}.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{studio_server.url}/user/login/")
            page.fill("input[name=email]", username)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{studio_server.url}/projects/{project_id}/data?task={task_id}")
            page.wait_for_selector(f"text={expect}", timeout=60_000)
            page.wait_for_selector("input[type=checkbox]:checked", timeout=30_000)
            ticked = page.eval_on_selector_all(
                "input[type=checkbox]:checked",
                "els => els.map(e => (e.closest('label') || e.parentElement).innerText)")
            text = page.inner_text("body")
            page.screenshot(path=str(path))
        finally:
            browser.close()
    # The hotkey hint follows the class name: "dog[2]".
    return Screen([t.split("[")[0].strip() for t in ticked], text, path)
