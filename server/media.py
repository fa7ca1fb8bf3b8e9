"""Media: image references in, downloaded and thumbnailed outputs out.

Inputs: `Media.resolve` turns what the user gave (an http(s) URL, a `data:image/...;base64,` URI,
an earlier output `callsheet://jobs/{id}/outputs/{n}` or a local path) into an `ImageInput`.
URLs are checked, not fetched: only http(s), no credentials, and no loopback/private/link-local
address by literal IP or by what the host name resolves to (unless CALLSHEET_ALLOW_PRIVATE_URLS).
Local files come only from CALLSHEET_INPUT_ROOTS, with symlinks followed before the check.

Outputs: `Media.save_outputs` stores what a provider returned under `media_dir/<job_id>/`
(downloads only from the provider's own hosts or public addresses, with a size cap and a
content-type check), hashes, measures and thumbnails it. Thumbnails are small JPEGs so that a
tool result never carries a full image.

Pillow is loaded by the first image read (`_pillow`), not by every start: 2.5 MiB and ~10 ms that a
server answering its first `tools/list` has no use for.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import io
import ipaddress
import os
import re
import socket
import stat
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit

import anyio
import anyio.to_thread
import httpx

from server import paths
from server.errors import (
    BadResponse,
    InputError,
    NotFound,
    ProviderError,
    TransportError,
    error_for_status,
    storage_failure,
)
from server.links import INPUT_SECONDS, Links
from server.models import JobRecord, JobStatus, Output, RemoteOutput
from server.policy import DOWNLOAD, MAX_DOWNLOAD_BYTES, MAX_INPUT_IMAGE_BYTES

if TYPE_CHECKING:
    from PIL import Image

    from server.config import Settings
    from server.store import Store

THUMB_MAX_SIDE = 512
# A thumbnail travels base64-encoded (x4/3) inside a result that must stay under 100 KB in all.
THUMB_MAX_BYTES = 70 * 1024
MAX_REDIRECTS = 5

# Formats Pillow may open here: common photo formats only (never EPS/PDF and other exotic parsers).
_IMAGE_FORMATS = {
    "PNG": "Png",
    "JPEG": "Jpeg",
    "WEBP": "WebP",
    "GIF": "Gif",
    "AVIF": "Avif",
    "TIFF": "Tiff",
    "BMP": "Bmp",
}
"""The image formats accepted, with the Pillow plugin module of each (`PIL.<name>ImagePlugin`)."""
_FORMAT_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # multi-picture JPEG from phones: a JPEG to everyone else
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "AVIF": "image/avif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "image/tiff": "tiff",
    "image/bmp": "bmp",
    "image/heic": "heic",
    "image/heif": "heif",
    "image/svg+xml": "svg",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
    "video/mpeg": "mpg",
}
# Declared image types Pillow reads: a file declared as one of these must really be one.
_CHECKED_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
# What Pillow can raise on a damaged or hostile file (and its DecompressionBombError: `_unreadable`).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)
_OUTPUT_REF = re.compile(r"callsheet://jobs/([^/?#]+)/outputs/(\d+)")
_UPLOAD_REF = re.compile(r"callsheet://uploads/([0-9a-f]{64})")
_UPLOAD_FIX = (
    "POST the image's bytes to <server>/uploads (with your token) and pass the callsheet://uploads/<sha256> "
    "reference it answers, or pass a data:image/...;base64 URI."
)
_DATA_URI = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),(.*)", re.DOTALL | re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_URL_FIX = (
    "Use a public http(s) URL, a local file path, a data:image/...;base64 URI or a callsheet:// output."
)
_PRIVATE_FIX = (
    "Use a public URL, or a local file path; for a self-hosted setup set CALLSHEET_ALLOW_PRIVATE_URLS=1."
)


@dataclass(frozen=True)
class ImageInput:
    """A resolved image reference: either a checked public URL or the image bytes."""

    field: str
    """Argument name, for error messages."""
    origin: str
    """What the user gave, shortened for display."""
    url: str | None = None
    """A checked public http(s) URL, passed to providers as-is."""
    data: bytes | None = None
    """Image bytes (from a local path, a data URI, or an earlier output)."""
    mime_type: str | None = None
    sha256: str | None = None
    source_url: str | None = None
    """For earlier outputs: the provider URL kept in `Output.source_url` (may have expired)."""
    link: str | None = None
    """With signed links (CALLSHEET_PUBLIC_URL): a short-lived link to these bytes, for providers that
    take URLs only (server/links.py)."""

    def key(self) -> str:
        """Idempotency key material: files by content hash, URLs as given."""
        if self.data is not None:
            return f"sha256:{self.sha256 or hashlib.sha256(self.data).hexdigest()}"
        return self.url or self.origin

    def data_uri(self) -> str:
        """The image as a `data:` URI, for providers that take base64."""
        if self.data is None:
            raise InputError(
                self.field,
                f"{self.origin} is a URL and this provider needs the image itself.",
                "Download the image into one of the allowed input folders and pass its path instead.",
            )
        mime = self.mime_type or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(self.data).decode('ascii')}"


class ImageResolver(Protocol):
    async def resolve(self, field: str, ref: str) -> ImageInput: ...


@dataclass(frozen=True)
class CallerImages:
    """`Media.resolve` on behalf of one caller: earlier outputs only from that caller's own jobs."""

    media: Media
    caller: str | None
    links: bool = False
    """Image bytes also get a signed link (for a provider that takes URLs only)."""

    async def resolve(self, field: str, ref: str) -> ImageInput:
        return await self.media.resolve(field, ref, caller=self.caller, link=self.links)


class Media:
    """Image references in, outputs on disk out; every file it writes lies inside `media_dir`."""

    def __init__(self, settings: Settings, store: Store, links: Links | None = None) -> None:
        self.settings = settings
        self.store = store
        self.links = links

    # ------------------------------------------------------------------ inputs

    async def resolve(
        self, field: str, ref: str, *, caller: str | None = None, link: bool = False
    ) -> ImageInput:
        """Check and load one image reference; raises InputError naming the field and the fix.

        With `caller`, a callsheet:// output reference must name one of that caller's jobs, and a local
        path no file of another caller's. With `link` and signed links on, image bytes are kept in the
        data folder and get a short-lived link too."""
        image = await self._resolve(field, ref, caller)
        if not link or self.links is None or image.data is None:
            return image
        digest = image.sha256 or hashlib.sha256(image.data).hexdigest()
        name = f"{digest}.{_EXTENSIONS.get(image.mime_type or '', 'bin')}"
        await anyio.to_thread.run_sync(self._keep, self.settings.media_dir / "inputs", name, image.data)
        return dataclasses.replace(image, link=self.links.sign(f"inputs/{name}", INPUT_SECONDS))

    def input_file(self, name: str) -> Path | None:
        """An input kept for a signed link (`inputs/{sha256}.{ext}`), if it is there."""
        path = self._inside_media(self.settings.media_dir / "inputs" / name)
        return path if path is not None and path.is_file() else None

    def _keep(self, folder: Path, name: str, data: bytes) -> None:
        """Write `data` as `folder/name` unless it is there: the name is its content hash."""
        if not (folder / name).exists():
            paths.make_dirs(self.settings.home, folder)
            paths.write_atomic(self.settings.home, folder / name, data)

    async def _resolve(self, field: str, ref: str, caller: str | None) -> ImageInput:
        ref = ref.strip()
        if not ref:
            raise InputError(field, "the image reference is empty.", _URL_FIX)
        lowered = ref.lower()
        if lowered.startswith(("http:", "https:")):
            await check_url(
                ref, allow_private=self.settings.allow_private_urls, fail=_input_failure(field, ref)
            )
            return ImageInput(field=field, origin=_shorten(ref, 200), url=ref)
        if lowered.startswith("data:"):
            return _from_data_uri(field, ref)
        if lowered.startswith("callsheet://uploads/"):
            return await self._from_upload(field, ref, caller)
        if lowered.startswith("callsheet:"):
            return await self._from_output(field, ref, caller)
        scheme = _SCHEME.match(ref)
        if scheme and not _WINDOWS_DRIVE.match(ref):
            raise InputError(
                field,
                f"{_shorten(ref, 80)} uses the unsupported scheme {scheme.group(1)!r}: "
                "only http and https URLs are accepted.",
                _URL_FIX + " (A file name containing ':' can be given as ./name.)",
            )
        return await self._from_path(field, ref, caller)

    async def upload(self, data: bytes, caller: str | None) -> dict[str, Any]:
        """Keep an image a remote client uploaded (`POST /uploads`), for `caller` only, by its content
        hash: the same caps and checks as a local file. Returns its `callsheet://uploads/` reference."""
        if len(data) > MAX_INPUT_IMAGE_BYTES:
            raise InputError("upload", f"the image is larger than {_mb(MAX_INPUT_IMAGE_BYTES)}.", _SMALLER)
        mime = _identify(data)
        if mime is None:
            raise InputError(
                "upload", "the body is not an image (PNG, JPEG, WebP, GIF, AVIF, TIFF or BMP).", _UPLOAD_FIX
            )
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest}.{_EXTENSIONS.get(mime, 'bin')}"
        await anyio.to_thread.run_sync(self._keep, self._uploads(caller), name, data)
        return {
            "uri": f"callsheet://uploads/{digest}",
            "sha256": digest,
            "bytes": len(data),
            "mime_type": mime,
        }

    def _uploads(self, caller: str | None) -> Path:
        """A caller's uploads: a folder of its own, named by a hash of its id."""
        return (
            self.settings.media_dir
            / "uploads"
            / hashlib.sha256((caller or "local").encode()).hexdigest()[:16]
        )

    async def _from_upload(self, field: str, ref: str, caller: str | None) -> ImageInput:
        match = _UPLOAD_REF.fullmatch(ref.strip())
        found = sorted(self._uploads(caller).glob(f"{match.group(1)}.*")) if match else []
        if match is None or not found:
            raise InputError(field, f"{_shorten(ref, 90)} names no upload of yours.", _UPLOAD_FIX)
        data = await anyio.Path(found[0]).read_bytes()
        shown = _shorten(ref, 90)
        return ImageInput(
            field=field, origin=shown, data=data, mime_type=_identify(data), sha256=match.group(1)
        )

    async def _from_output(self, field: str, ref: str, caller: str | None) -> ImageInput:
        match = _OUTPUT_REF.fullmatch(ref)
        if not match:
            raise InputError(
                field,
                f"{_shorten(ref, 80)} is not an output reference.",
                "Use callsheet://jobs/{job_id}/outputs/{n} as listed in the job's outputs.",
            )
        job_id, n = match.group(1), int(match.group(2))
        check = "Check the job id and its outputs with job_status."
        job = await self.store.get(job_id)
        if job is None or (caller is not None and job.caller != caller):
            raise InputError(field, f"{ref} names an unknown job {job_id!r}.", check)
        if job.status is not JobStatus.SUCCEEDED:
            raise InputError(
                field,
                f"{ref}: job {job_id} is {job.status.value}, not succeeded.",
                "Wait for it with job_wait and use its outputs once it has succeeded.",
            )
        if n >= len(job.outputs):
            have = f"outputs 0..{len(job.outputs) - 1}" if job.outputs else "no outputs"
            raise InputError(field, f"{ref}: job {job_id} has {have}.", check)
        output = job.outputs[n]
        if not output.mime_type.startswith("image/"):
            raise InputError(
                field, f"{ref} is a {output.mime_type} file, not an image.", "Pass an image output."
            )
        path = self._inside_media(Path(output.path))
        try:
            data = await anyio.Path(path).read_bytes() if path else None
        except OSError:
            data = None
        if data is None:
            raise InputError(
                field,
                f"{ref}: the file of this output is missing from the data folder.",
                "Run the job again (force: true) or pass the image another way.",
            )
        return ImageInput(
            field=field,
            origin=ref,
            data=data,
            mime_type=output.mime_type,
            sha256=hashlib.sha256(data).hexdigest(),
            source_url=output.source_url,
        )

    async def _from_path(self, field: str, ref: str, caller: str | None) -> ImageInput:
        """Read a local image that lies inside an input root and, when several callers share the
        server, inside no folder of another caller's (`paths.caller_of`)."""
        shown = _shorten(ref, 200)
        try:
            path = await anyio.to_thread.run_sync(paths.resolve, ref)
        except (OSError, RuntimeError, ValueError):
            raise InputError(field, f"{shown} is not a valid file path.", _URL_FIX) from None
        roots = self.settings.input_roots
        root = paths.containing_root(path, roots)
        if root is None:
            # Outside the roots nothing is said about whether a file exists.
            raise InputError(
                field,
                f"{shown} is outside the allowed input folders ({', '.join(str(r) for r in roots)}).",
                "Move the file into one of them or add its folder to CALLSHEET_INPUT_ROOTS.",
            )
        if caller is not None:
            await self._check_caller(field, shown, root, path, caller)
        data = await anyio.to_thread.run_sync(_read_file, field, shown, root, path)
        mime = _identify(data)
        if mime is None:
            raise InputError(
                field,
                f"{shown} is not an image (PNG, JPEG, WebP, GIF, AVIF, TIFF or BMP).",
                "Pass an image file.",
            )
        return ImageInput(
            field=field, origin=shown, data=data, mime_type=mime, sha256=hashlib.sha256(data).hexdigest()
        )

    async def _check_caller(self, field: str, shown: str, root: Path, path: Path, caller: str) -> None:
        """A caller (one of several) reads no file of another caller's job or shoot folder, and nothing
        of callsheet's own data folder that is not marked as theirs."""
        marked, whose = await anyio.to_thread.run_sync(paths.caller_of, root, path)
        home = self.settings.home
        if (marked and whose != caller) or (not marked and (path == home or path.is_relative_to(home))):
            raise InputError(
                field,
                f"{shown} is not one of your files.",
                "Pass your own earlier outputs as callsheet://jobs/{job_id}/outputs/{n} references.",
            )

    # ----------------------------------------------------------------- outputs

    async def save_outputs(
        self,
        job: JobRecord,
        outputs: list[RemoteOutput],
        client: httpx.AsyncClient,
        *,
        trusted: frozenset[str] = frozenset(),
        deadline: float = DOWNLOAD.deadline,
    ) -> list[Output]:
        """Store every output of a finished job under `media_dir/<job_id>/`, hashed, measured, thumbnailed.

        `trusted` are the origins (`origin()`: scheme, host and port) that may be private: the
        provider's own. Each download must end within `deadline` seconds.

        Raises ProviderError subclasses for what the provider sent: `TransportError(maybe_sent=False)`
        and 5xx errors are retryable (the engine downloads again), refusals (host, size, type) are
        not; StorageError when the file cannot be written here (disk_full when the disk is full).
        """
        try:
            job_dir = self._job_dir(job)
        except OSError as exc:
            raise storage_failure(exc, f"The media folder of job {job.job_id} could not be made") from None
        saved: list[Output] = []
        for n, remote in enumerate(outputs):
            tmp = job_dir / f".output_{n}.{uuid.uuid4().hex}.part"
            try:
                if remote.data is not None:
                    mime, digest, size = await self._write_inline(job, n, remote, tmp)
                    source_url = None
                elif remote.url:
                    mime, digest, size = await self._download(
                        job, n, remote.url, client, trusted, tmp, deadline
                    )
                    source_url = remote.url
                else:
                    raise BadResponse(
                        f"{job.provider} returned output {n} without a URL or data.",
                        retryable=False,
                        provider=job.provider,
                    )
                final = job_dir / f"output_{n}.{_extension(mime)}"
                width, height = await anyio.to_thread.run_sync(self._finish, tmp, final, mime)
            except OSError as exc:
                raise storage_failure(exc, f"Output {n} could not be saved in {job_dir}") from None
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            saved.append(
                Output(
                    uri=f"callsheet://jobs/{job.job_id}/outputs/{n}",
                    path=str(final),
                    source_url=source_url,
                    mime_type=mime,
                    width=width,
                    height=height,
                    bytes=size,
                    sha256=digest,
                )
            )
        return saved

    def _job_dir(self, job: JobRecord) -> Path:
        """The job's media folder, made (never through a symlink) and marked as its caller's."""
        home: Path = self.settings.home
        job_dir = (self.settings.media_dir / job.job_id).resolve()
        if job_dir.parent != self.settings.media_dir.resolve():
            raise ProviderError(
                f"Refusing to store outputs of job {job.job_id!r} outside {self.settings.media_dir}.",
                code="storage_error",
                retryable=False,
                provider=job.provider,
            )
        home.mkdir(parents=True, exist_ok=True)  # the data folder itself is the administrator's
        paths.make_dirs(home, job_dir)
        paths.mark_caller(home, job_dir, job.caller)
        return job_dir

    async def _write_inline(
        self, job: JobRecord, n: int, remote: RemoteOutput, tmp: Path
    ) -> tuple[str, str, int]:
        data = remote.data or b""
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise BadResponse(
                f"{job.provider} returned output {n} larger than {MAX_DOWNLOAD_BYTES} bytes.",
                retryable=False,
                provider=job.provider,
            )
        declared = _media_type(remote.mime_type)
        mime = _identify(data) or _sniff_video(data[:64])
        if (
            mime is None
            and declared.startswith(("image/", "video/"))
            and declared not in _CHECKED_IMAGE_TYPES
        ):
            mime = declared
        if mime is None:
            raise BadResponse(
                f"{job.provider} returned output {n} that is neither an image nor a video.",
                retryable=False,
                provider=job.provider,
            )
        await anyio.Path(tmp).write_bytes(data)
        return mime, hashlib.sha256(data).hexdigest(), len(data)

    async def _download(
        self,
        job: JobRecord,
        n: int,
        url: str,
        client: httpx.AsyncClient,
        trusted: frozenset[str],
        tmp: Path,
        deadline: float,
    ) -> tuple[str, str, int]:
        """Stream one output to `tmp`, following redirects by hand so every hop is checked."""
        provider = job.provider
        what = f"output {n} of {provider}"
        for _hop in range(MAX_REDIRECTS + 1):
            host = await check_url(
                url,
                allow_private=self.settings.allow_private_urls,
                trusted=trusted,
                fail=_output_failure(what, provider),
            )
            try:
                with anyio.fail_after(deadline):
                    async with client.stream(
                        "GET", url, timeout=DOWNLOAD.timeout, follow_redirects=False
                    ) as response:
                        if response.is_redirect and "location" in response.headers:
                            url = urljoin(url, response.headers["location"])
                            continue
                        if not response.is_success:
                            raise error_for_status(
                                response.status_code,
                                f"downloading {what} from {host} failed.",
                                provider=provider,
                            )
                        return await _stream_to_file(response, tmp, what, provider)
            except TimeoutError:
                raise TransportError(
                    f"Downloading {what} from {host} did not finish within {deadline:g} s.",
                    maybe_sent=False,
                    provider=provider,
                ) from None
            except httpx.RequestError as exc:
                raise TransportError(
                    f"Could not download {what} from {host} ({type(exc).__name__}).",
                    maybe_sent=False,
                    provider=provider,
                ) from None
            except httpx.InvalidURL:
                raise BadResponse(
                    f"{provider} gave an invalid URL for output {n}.", retryable=False, provider=provider
                ) from None
        raise BadResponse(
            f"Downloading {what} was redirected more than {MAX_REDIRECTS} times.",
            retryable=False,
            provider=provider,
        )

    def _finish(self, tmp: Path, final: Path, mime: str) -> tuple[int | None, int | None]:
        """Measure, move into place atomically and thumbnail (worker thread)."""
        width = height = None
        if mime.startswith("image/"):
            size = _image_size(tmp)
            if size is not None:
                width, height = size
        os.replace(tmp, final)
        thumb = thumb_path(final)
        if mime.startswith("image/"):
            data = _make_thumbnail(final)
            if data is not None:
                paths.write_atomic(self.settings.home, thumb, data)
                return width, height
        thumb.unlink(missing_ok=True)  # never leave a stale thumbnail of an earlier file
        return width, height

    # ------------------------------------------------------------------ reading

    def thumbnail(self, output: Output) -> tuple[bytes, str] | None:
        """A JPEG of at most 512 px and under 100 KB for image outputs (cached beside the file)."""
        if not output.mime_type.startswith("image/"):
            return None
        path = self._inside_media(Path(output.path))
        if path is None or not path.is_file():
            return None
        thumb = thumb_path(path)
        try:
            if thumb.stat().st_mtime_ns >= path.stat().st_mtime_ns:
                return thumb.read_bytes(), "image/jpeg"
        except OSError:
            pass
        data = _make_thumbnail(path)
        if data is None:
            return None
        with contextlib.suppress(OSError):
            paths.write_atomic(self.settings.home, thumb, data)
        return data, "image/jpeg"

    def output_file(self, job: JobRecord, n: int) -> tuple[Path, str]:
        """The stored file of output `n` and its MIME type; NotFound if there is none."""
        if not 0 <= n < len(job.outputs):
            raise NotFound(f"Job {job.job_id} has no output {n}; check its outputs with job_status.")
        output = job.outputs[n]
        path = self._inside_media(Path(output.path))
        if path is None or not path.is_file():
            raise NotFound(f"The file of output {n} of job {job.job_id} is missing from the data folder.")
        return path, output.mime_type

    def _inside_media(self, path: Path) -> Path | None:
        """`path` resolved, or None when it is not inside the media folder."""
        try:
            resolved = path.resolve()
            media = self.settings.media_dir.resolve()
        except (OSError, RuntimeError):
            return None
        return resolved if resolved.is_relative_to(media) and resolved != media else None


# ---------------------------------------------------------------------- URL checks


class _Fail(Protocol):
    def __call__(self, problem: str, fix: str, *, retryable: bool = False) -> Exception: ...


def _input_failure(field: str, ref: str) -> _Fail:
    shown = _shorten(ref, 120)

    def fail(problem: str, fix: str, *, retryable: bool = False) -> Exception:
        return InputError(field, f"{shown}: {problem}", fix)

    return fail


def _output_failure(what: str, provider: str) -> _Fail:
    def fail(problem: str, fix: str, *, retryable: bool = False) -> Exception:
        message = f"Refused to download {what}: {problem}"
        if retryable:
            return TransportError(message, maybe_sent=False, provider=provider)
        return ProviderError(message, code="download_refused", retryable=False, provider=provider)

    return fail


async def check_url(
    url: str,
    *,
    allow_private: bool,
    fail: _Fail,
    trusted: frozenset[str] = frozenset(),
) -> str:
    """Check an http(s) URL and return its host; raises `fail(...)` when it must not be fetched.

    Refused: other schemes, credentials in the URL, and hosts that are or resolve to a
    non-public address (loopback, private, link-local, reserved, multicast, unspecified), unless
    `allow_private` or the URL's origin (scheme, host and port) is one of `trusted` (the
    provider's own: its host on another port or scheme is not trusted).
    """
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        raise fail("the URL contains spaces, control characters or backslashes.", "Percent-encode them.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise fail("the URL is malformed (bad host or port).", _URL_FIX) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise fail(f"the scheme {parts.scheme!r} is not allowed; only http and https are.", _URL_FIX)
    if "@" in parts.netloc:
        raise fail(
            "URLs with a user name or password are refused.", "Remove the user:password@ part of the URL."
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise fail("the URL has no host.", _URL_FIX)
    if allow_private or origin(url) in trusted:
        return host
    literal = _literal_ip(host)
    if literal is not None:
        if not _is_public(literal):
            raise fail(f"{host} is a loopback, private or otherwise non-public address.", _PRIVATE_FIX)
        return host
    if host == "localhost" or host.endswith(".localhost"):
        raise fail(f"{host} is the local machine.", _PRIVATE_FIX)
    addresses = await _lookup(host, port or _default_port(parts))
    if addresses is None:
        raise fail(
            f"cannot resolve host {host}.",
            "Check the URL and the network connection, or pass a local file instead.",
            retryable=True,
        )
    for address in addresses:
        if not _is_public(address):
            raise fail(f"{host} resolves to the non-public address {address}.", _PRIVATE_FIX)
    return host


async def _lookup(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """Every address `host` resolves to; None when it does not resolve."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return None
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for info in infos:
        try:
            found.append(ipaddress.ip_address(str(info[4][0])))
        except ValueError:
            continue
    return found or None


def _default_port(parts: SplitResult) -> int:
    return 443 if parts.scheme.lower() == "https" else 80


def origin(url: str) -> str | None:
    """`scheme://host:port` of an http(s) URL, normalized (case, default port, trailing dot); else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _default_port(parts)}"


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` spells, including the forms inet_aton accepts (2130706433, 0x7f.1, 0177.0.0.1)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_public(embedded)
        if ip.sixtofour is not None and not _is_public(ip.sixtofour):
            return False
        if ip.teredo is not None and not all(_is_public(a) for a in ip.teredo):
            return False
        if ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


# -------------------------------------------------------------------- helpers


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _inside_any(path: Path, roots: Iterable[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _from_data_uri(field: str, ref: str) -> ImageInput:
    shown = _shorten(ref, 40)
    fix = "Pass data:image/<type>;base64,<data> with valid base64, or a file path instead."
    match = _DATA_URI.fullmatch(ref)
    if not match:
        raise InputError(field, f"{shown} is not a valid data URI.", fix)
    media_type = match.group(1).strip().lower()
    params = [p.strip().lower() for p in match.group(2).split(";") if p.strip()]
    if not media_type.startswith("image/"):
        raise InputError(field, f"{shown} has media type {media_type or 'text/plain'!r}, not an image.", fix)
    if "base64" not in params:
        raise InputError(field, f"{shown} is not base64-encoded.", fix)
    payload = re.sub(r"\s+", "", match.group(3))
    if len(payload) * 3 // 4 > MAX_INPUT_IMAGE_BYTES + 3:
        raise InputError(field, f"{shown} is larger than {_mb(MAX_INPUT_IMAGE_BYTES)}.", _SMALLER)
    payload += "=" * (-len(payload) % 4)
    if "-" in payload or "_" in payload:  # the URL-safe alphabet
        payload = payload.replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(field, f"{shown} does not contain valid base64.", fix) from None
    if len(data) > MAX_INPUT_IMAGE_BYTES:
        raise InputError(field, f"{shown} is larger than {_mb(MAX_INPUT_IMAGE_BYTES)}.", _SMALLER)
    mime = _identify(data)
    if mime is None:
        raise InputError(
            field, f"{shown} does not decode to an image (PNG, JPEG, WebP, GIF, AVIF, TIFF or BMP).", fix
        )
    return ImageInput(
        field=field, origin=shown, data=data, mime_type=mime, sha256=hashlib.sha256(data).hexdigest()
    )


_SMALLER = "Pass a smaller image (resize or compress it)."


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def _read_file(field: str, shown: str, root: Path, path: Path) -> bytes:
    """Read a regular file of at most MAX_INPUT_IMAGE_BYTES from inside `root`, through an open that
    no folder swapped for a symlink after the check can redirect (worker thread)."""
    try:
        fd = paths.open_inside(root, path)
    except paths.PathChanged:
        raise InputError(
            field, f"{shown} changed while it was being opened.", "Pass the path of a file that stays put."
        ) from None
    except FileNotFoundError:
        raise InputError(
            field, f"{shown}: file not found.", "Check the path (~ and relative paths are allowed)."
        ) from None
    except OSError as exc:
        raise InputError(
            field, f"{shown} cannot be read ({exc.strerror}).", "Check its permissions."
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(field, f"{shown} is not a regular file.", "Pass an image file.")
        if info.st_size > MAX_INPUT_IMAGE_BYTES:
            raise InputError(field, f"{shown} is larger than {_mb(MAX_INPUT_IMAGE_BYTES)}.", _SMALLER)
        chunks: list[bytes] = []
        remaining = MAX_INPUT_IMAGE_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise InputError(
            field, f"{shown} cannot be read ({exc.strerror}).", "Check the file and its permissions."
        ) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_INPUT_IMAGE_BYTES:
        raise InputError(field, f"{shown} is larger than {_mb(MAX_INPUT_IMAGE_BYTES)}.", _SMALLER)
    return data


@functools.cache
def _pillow() -> tuple[str, ...]:
    """Load Pillow with the allowed formats this build has (Image.open refuses unknown names).

    Loads only their plugins: `Image.init()` imports all forty, ~40 ms on the first image read.
    """
    from PIL import Image

    for plugin in _IMAGE_FORMATS.values():
        with contextlib.suppress(ImportError):  # e.g. AVIF in an older Pillow
            importlib.import_module(f"PIL.{plugin}ImagePlugin")
    return tuple(f for f in _IMAGE_FORMATS if f in Image.OPEN)


@functools.cache
def _unreadable() -> tuple[type[BaseException], ...]:
    """What reading a damaged or hostile image can raise."""
    from PIL import Image

    return (*_PIL_ERRORS, Image.DecompressionBombError)


def _open_image(source: Path | bytes) -> Image.Image:
    formats = _pillow()
    from PIL import Image

    fp: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    return Image.open(fp, formats=formats)


def _identify(data: bytes) -> str | None:
    """The MIME type of `data` if Pillow recognizes and verifies it as a supported image."""
    try:
        with _open_image(data) as im:
            mime = _FORMAT_MIME.get(im.format or "")
            im.verify()
    except _unreadable():
        return None
    return mime


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with _open_image(path) as im:
            return im.size
    except _unreadable():
        return None


def _identify_file(path: Path) -> str | None:
    try:
        with _open_image(path) as im:
            return _FORMAT_MIME.get(im.format or "")
    except _unreadable():
        return None


def _sniff_video(head: bytes) -> str | None:
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _extension(mime: str) -> str:
    ext = _EXTENSIONS.get(mime)
    if ext:
        return ext
    subtype = re.sub(r"[^a-z0-9]", "", mime.split("/", 1)[-1].split("+", 1)[0])
    return subtype[:8] or "bin"


def thumb_path(path: Path) -> Path:
    """Where an output's cached JPEG thumbnail sits: beside it, `output_0.thumb.jpg`."""
    return path.with_name(f"{path.name.split('.', 1)[0]}.thumb.jpg")


def _make_thumbnail(path: Path) -> bytes | None:
    """JPEG, long side <= 512 px, under 100 KB: lower quality, then size, until it fits."""
    from PIL import Image, ImageOps

    try:
        with _open_image(path) as im:
            im.draft("RGB", (THUMB_MAX_SIDE, THUMB_MAX_SIDE))
            frame = ImageOps.exif_transpose(im)
            frame.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE), Image.Resampling.LANCZOS)
            rgb = _flatten(frame)
    except _unreadable():
        return None
    while True:
        for quality in (85, 75, 65, 55, 45, 35):
            buffer = io.BytesIO()
            rgb.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() < THUMB_MAX_BYTES:
                return buffer.getvalue()
        width, height = rgb.size
        if max(width, height) <= 16:
            return buffer.getvalue()
        rgb = rgb.resize((max(1, width * 3 // 4), max(1, height * 3 // 4)), Image.Resampling.LANCZOS)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB on a white background (JPEG has no alpha)."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = image.convert("L")
    return image.convert("RGB")


async def _stream_to_file(
    response: httpx.Response, tmp: Path, what: str, provider: str
) -> tuple[str, str, int]:
    """Write the body to `tmp` under the size cap; return (mime, sha256, bytes)."""
    declared = _media_type(response.headers.get("content-type"))
    if not (declared.startswith(("image/", "video/")) or declared in ("application/octet-stream", "")):
        raise BadResponse(
            f"{what} has content type {declared!r}, not an image or video.",
            retryable=False,
            provider=provider,
        )
    too_big = BadResponse(
        f"{what} is larger than the download cap of {_mb(MAX_DOWNLOAD_BYTES)}.",
        retryable=False,
        provider=provider,
    )
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_DOWNLOAD_BYTES:
        raise too_big
    digest = hashlib.sha256()
    size = 0
    head = b""
    async with await anyio.open_file(tmp, "wb") as fh:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise too_big
            if len(head) < 64:
                head += chunk[: 64 - len(head)]
            digest.update(chunk)
            await fh.write(chunk)
    detected = await anyio.to_thread.run_sync(_identify_file, tmp)
    mime = detected
    if mime is None and declared.startswith("video/"):
        mime = declared
    if mime is None and declared in ("application/octet-stream", ""):
        mime = _sniff_video(head)
    if mime is None and declared.startswith("image/") and declared not in _CHECKED_IMAGE_TYPES:
        mime = declared
    if mime is None:
        raise BadResponse(
            f"{what} is not a valid image or video (declared {declared or 'no content type'}).",
            retryable=False,
            provider=provider,
        )
    return mime, digest.hexdigest(), size
