"""The cookie-sync pixel of the DMP integration ("Cookie sync": the DMP fires the pixel with the
DMP cookie id, the partner id and optionally the site)."""

from __future__ import annotations

from urllib.parse import urlencode

DEFAULT_BASE = "https://pixel.digitalaudience.io/sync"  # assumption: the real host comes with the partner setup


def cookie_sync_url(partner_id: str, cookie_id: str, site: str | None = None, *, base_url: str = DEFAULT_BASE) -> str:
    """The pixel URL for one DMP cookie, every value URL-encoded (`partner`, `uid`, optional `site`)."""
    if not partner_id or not cookie_id:
        raise ValueError("cookie_sync_url needs a partner id and a cookie id")
    params = {"partner": partner_id, "uid": cookie_id}
    if site:
        params["site"] = site
    return f"{base_url}?{urlencode(params)}"
