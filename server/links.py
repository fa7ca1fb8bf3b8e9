"""Signed links: files people and providers can open without a token, and nothing else.

With `CALLSHEET_PUBLIC_URL` and `CALLSHEET_SIGNING_KEY`, `serve --http` serves a few kinds of file at
`<public URL>/files/<path>?exp=<unix time>&sig=<HMAC>`:
- `jobs/{job_id}/outputs/{n}`: an output (the `download_url` of each output);
- `shoots/{shoot_id}/` and `shoots/{shoot_id}/{name}`: a shoot folder's listing and its files (the
  contact sheet among them);
- `inputs/{sha256}.{ext}`: an input image handed to a provider that takes URLs only (Auto Toon,
  neo-fashion), kept in the data folder by its content hash.
The signature (HMAC-SHA256 with the signing key) covers the path and the expiry, so a link opens only
what it names, only until it expires; a changed character is refused. Links are valid for whole
periods (`ttl`, rounded up to the next 5 minutes), so asking twice gives the same link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from urllib.parse import quote

OUTPUT_SECONDS = 24 * 3600
"""How long a link to an output, a contact sheet or a shoot folder is valid."""
INPUT_SECONDS = 3600
"""How long a provider may fetch an input image by its link."""
_GRAIN = 300

PATHS = re.compile(
    r"jobs/(?P<job>[A-Za-z0-9_-]{1,64})/outputs/(?P<n>\d{1,4})"
    r"|shoots/(?P<shoot>[A-Za-z0-9_-]{1,64})/(?P<name>[A-Za-z0-9_.-]{0,200})"
    r"|inputs/(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{1,5})"
)
"""Every path a link may name; anything else is refused before a signature is even looked at."""


class Links:
    def __init__(self, public_url: str, key: str, clock: Callable[[], float] = time.time) -> None:
        self.base = f"{public_url.rstrip('/')}/files/"
        self._key = key.encode()
        self._clock = clock

    def sign(self, path: str, ttl: int = OUTPUT_SECONDS) -> str:
        """A link to `path` (one of `PATHS`), valid for at least `ttl` seconds."""
        assert PATHS.fullmatch(path), path
        expires = (int(self._clock()) + ttl + _GRAIN - 1) // _GRAIN * _GRAIN
        return f"{self.base}{quote(path)}?exp={expires}&sig={self._signature(path, expires)}"

    def problem(self, path: str, exp: str, sig: str) -> str | None:
        """Why a link may not be opened (None: it may): unknown path, bad or tampered signature, expired."""
        if not PATHS.fullmatch(path) or not exp.isdigit():
            return "This is not a callsheet link."
        if not hmac.compare_digest(sig.encode(), self._signature(path, int(exp)).encode()):
            return "This link's signature does not match: it was changed, or made with another key."
        if int(exp) < self._clock():
            return "This link has expired: ask for the job or shoot again for a fresh one."
        return None

    def hook(self, job_id: str) -> str:
        """Where a provider says that job `job_id` ended: a path only this server can make (FASHN does
        not sign its webhooks, so the path is the secret; the state is confirmed with the provider)."""
        return (
            f"{self.base.removesuffix('files/')}hooks/{quote(job_id)}/{self._signature(f'hook:{job_id}', 0)}"
        )

    def hook_ok(self, job_id: str, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._signature(f"hook:{job_id}", 0).encode())

    def _signature(self, path: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
