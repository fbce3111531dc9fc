"""/docs, /redoc and /ui are served with their own assets: nothing loads from a CDN."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

# Scripts, stylesheets and icons: what a page loads (not its links to other pages).
ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/ui"])
def test_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assets = ASSET.findall(html.text)
    assert assets, f"{page} references no scripts or styles"
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from another host"
        fetched = client.get(url)
        assert fetched.status_code == 200, url
        assert len(fetched.content) > 100, url


def test_ui_modules_are_served_as_javascript(client: TestClient) -> None:
    for module in ("app.js", "api.js", "mask.js", "progress.js", "pages/create.js"):
        answer = client.get(f"/ui/static/{module}")
        assert answer.status_code == 200, module
        assert "javascript" in answer.headers["content-type"], module
    assert "cdn" not in client.get("/ui/static/app.js").text.lower()
