"""The cookie-sync pixel of the DMP integration ("Cookie sync": the DMP fires the pixel with the
DMP cookie id, the partner id and optionally the site), exactly as the document gives it (R7):

    https://target.digitalaudience.io/bakery/sync/dmpsyncendpoint
        ?site=NAMEORIDOFTHESITE&partner=NAMEOFTHEPARTNER&cookieid=DMPCOOKIEID&read=false
"""

from __future__ import annotations

from urllib.parse import quote

ENDPOINT = "https://target.digitalaudience.io/bakery/sync/dmpsyncendpoint"


def cookie_sync_url(partner: str, cookie_id: str, site: str | None = None) -> str:
    """The pixel URL for one DMP cookie: the document's parameters in its order, every value
    percent-encoded (a space is %20, `/`, `?`, `&` and `=` are escaped). `site` is optional in the
    text ("optionally the name or id of the site"): without one the parameter is left out."""
    if not partner or not cookie_id:
        raise ValueError("cookie_sync_url needs a partner and a DMP cookie id")
    params = ([("site", site)] if site else []) + [("partner", partner), ("cookieid", cookie_id)]
    return ENDPOINT + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params) + "&read=false"
