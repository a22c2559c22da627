"""The API's pages in a real browser: Debian's chromium, headless, able to reach loopback only.

Swagger UI (`/docs`) and ReDoc (`/redoc`) must draw every operation, the relays' and the typed
example's, from the service alone and under the Content-Security-Policy it sends with them.
FastAPI's own pages, which load their scripts from a CDN, draw nothing here.
"""

import re
import subprocess
from pathlib import Path

import pytest

from tests.projects import DEFAULTS, Bake, environment_key
from tests.running import image_command, program

pytestmark = pytest.mark.xdist_group(environment_key(DEFAULTS))

OPERATIONS = ["/items/{item_id}", "/stream/{path}", "/buffered/{path}"]
# What each page shows of an operation once drawn: its path, in its own element.
DRAWN = {
    "/docs": r'class="opblock-summary-path" data-path="{path}"',
    "/redoc": r">{path}</",
}


def rendered_dom(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run, as headless chromium prints it."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # the tests may run as root
            "--disable-gpu",
            f"--user-data-dir={profile}",
            # Every host name but loopback's fails to resolve: a CDN cannot be reached.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            # Virtual time: the page's timers run at once, and waiting for its loads is not timed.
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("page", list(DRAWN))
def test_the_api_pages_draw_every_operation_offline(bake: Bake, tmp_path: Path, page: str) -> None:
    # Debian's package, or the Google Chrome of GitHub's runners.
    chromium = program("chromium", "chromium", "chromium-browser", "google-chrome")
    with image_command(bake(), tmp_path) as service:
        dom = rendered_dom(chromium, service.url + page, tmp_path / "profile")
    for path in OPERATIONS:
        assert re.search(DRAWN[page].format(path=re.escape(path)), dom), (path, dom[:2000])
