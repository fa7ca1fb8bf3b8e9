"""Media security: refused schemes, private addresses, paths outside the roots, hostile downloads."""

from __future__ import annotations

import base64
import io
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from PIL import Image

from server import media as media_module
from server.config import Settings
from server.errors import BadResponse, InputError, NotFound, ProviderError, TransportError
from server.media import Media
from server.models import JobRecord, JobStatus, Output, new_job_id, utcnow
from server.providers.base import RemoteOutput

# Marked at collection time (not only by conftest) so that parametrized async tests work.
pytestmark = pytest.mark.anyio

PUBLIC_IP = "93.184.216.34"


class FakeStore:
    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}

    async def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)


def make_settings(tmp_path: Path, **extra: str) -> Settings:
    (tmp_path / "in").mkdir(exist_ok=True)
    env = {"CALLSHEET_HOME": str(tmp_path / "home"), "CALLSHEET_INPUT_ROOTS": str(tmp_path / "in"), **extra}
    return Settings.from_env(env)


def make_job(job_id: str | None = None) -> JobRecord:
    now = utcnow()
    return JobRecord(
        job_id=job_id or new_job_id(),
        provider="genapi",
        operation="generate",
        status=JobStatus.RUNNING,
        created_at=now,
        updated_at=now,
    )


def png(width: int = 16, height: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def media(tmp_path: Path, store: FakeStore) -> Media:
    return Media(make_settings(tmp_path), store)


@pytest.fixture
def open_media(tmp_path: Path, store: FakeStore) -> Media:
    return Media(make_settings(tmp_path, CALLSHEET_ALLOW_PRIVATE_URLS="1"), store)


def assert_clean(error: InputError, field: str = "image") -> None:
    """Names the field, says what to do, and carries no traceback."""
    text = str(error)
    assert error.field == field
    assert text.startswith(f"{field}: ")
    assert error.fix
    assert "Traceback" not in text and "Error(" not in text


# ------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "ref",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/a.png",
        "javascript:alert(1)",
        "gopher://127.0.0.1:6379/_INFO",
        "ws://example.com/a",
        "jar:http://example.com/a!/b",
    ],
)
async def test_unsupported_schemes(media: Media, ref: str) -> None:
    with pytest.raises(InputError, match="only http and https") as info:
        await media.resolve("image", ref)
    assert_clean(info.value)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:8000",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[ff02::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::ffff:169.254.169.254]",
        "[::127.0.0.1]",
        "[64:ff9b::a00:1]",
        "[2002:7f00:1::1]",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "127.1",
        "0",
        "017700000001",
    ],
)
async def test_private_literal_addresses_are_refused(media: Media, host: str) -> None:
    with pytest.raises(InputError, match="CALLSHEET_ALLOW_PRIVATE_URLS") as info:
        await media.resolve("image", f"http://{host}/a.png")
    assert_clean(info.value)


async def test_private_addresses_allowed_when_configured(open_media: Media) -> None:
    for url in ("http://127.0.0.1:8000/image/a.png", "http://[::1]/a.png", "http://localhost:9000/x"):
        assert (await open_media.resolve("image", url)).url == url


@pytest.mark.parametrize("host", [PUBLIC_IP, f"[::ffff:{PUBLIC_IP}]", "[2606:2800:220:1:248:1893:25c8:1946]"])
async def test_public_literal_addresses_pass(media: Media, host: str) -> None:
    url = f"https://{host}/a.png"
    assert (await media.resolve("image", url)).url == url


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "api.localhost"])
async def test_localhost_is_refused(media: Media, host: str) -> None:
    with pytest.raises(InputError, match="CALLSHEET_ALLOW_PRIVATE_URLS") as info:
        await media.resolve("image", f"http://{host}:8000/a.png")
    assert_clean(info.value)


async def test_localhost_resolves_to_loopback_for_real() -> None:
    """The DNS check itself, on a name that resolves without network."""
    addresses = await media_module._lookup("localhost", 80)
    assert addresses
    assert not any(media_module._is_public(a) for a in addresses)


def fake_dns(answers: dict[str, list[str]]) -> Callable[..., object]:
    async def getaddrinfo(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    return getaddrinfo


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.1.2.3"], [PUBLIC_IP, "192.168.0.10"], ["::1"], ["::ffff:10.0.0.1"], ["fe80::2"]],
)
async def test_host_names_resolving_to_private_addresses_are_refused(
    media: Media, open_media: Media, monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    monkeypatch.setattr(media_module.anyio, "getaddrinfo", fake_dns({"rebind.example.test": addresses}))
    url = "https://rebind.example.test/a.png"
    with pytest.raises(InputError, match="resolves to the non-public address") as info:
        await media.resolve("image", url)
    assert_clean(info.value)
    assert (await open_media.resolve("image", url)).url == url


async def test_unresolvable_host(media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_module.anyio, "getaddrinfo", fake_dns({}))
    with pytest.raises(InputError, match=r"cannot resolve host nowhere\.example\.test") as info:
        await media.resolve("image", "https://nowhere.example.test/a.png")
    assert_clean(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:secret@{PUBLIC_IP}/a.png",
        f"http://user@{PUBLIC_IP}/a.png",
        f"http://{PUBLIC_IP}@127.0.0.1/a.png",
        f"http://127.0.0.1\\@{PUBLIC_IP}/a.png",
    ],
)
async def test_credentials_and_confusing_authorities_are_refused(media: Media, url: str) -> None:
    with pytest.raises(InputError) as info:
        await media.resolve("image", url)
    assert_clean(info.value)
    assert "secret" not in str(info.value) or "user:password" in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["http:///a.png", "http://:80/a.png", "http://[::1/a.png", "https://a b/c", "http:example.com/a.png"],
)
async def test_malformed_urls(media: Media, url: str) -> None:
    with pytest.raises(InputError) as info:
        await media.resolve("image", url)
    assert_clean(info.value)


# ------------------------------------------------------------------ paths


async def test_path_outside_roots(media: Media, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        await media.resolve("model_image", "/etc/passwd")
    assert_clean(info.value, "model_image")
    text = str(info.value)
    assert "/etc/passwd is outside the allowed input folders" in text
    assert str((tmp_path / "in").resolve()) in text
    assert "CALLSHEET_INPUT_ROOTS" in text


async def test_missing_file_outside_roots_says_outside(media: Media) -> None:
    """No existence oracle: outside the roots the answer is the same whether the file exists or not."""
    with pytest.raises(InputError, match="outside the allowed input folders"):
        await media.resolve("image", "/nonexistent/secret.png")


async def test_dotdot_traversal(media: Media, tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(png())
    with pytest.raises(InputError, match="outside the allowed input folders") as info:
        await media.resolve("image", str(tmp_path / "in" / ".." / "secret.png"))
    assert_clean(info.value)


async def test_prefix_sibling_is_not_inside(media: Media, tmp_path: Path) -> None:
    sibling = tmp_path / "in-other"
    sibling.mkdir()
    (sibling / "a.png").write_bytes(png())
    with pytest.raises(InputError, match="outside the allowed input folders"):
        await media.resolve("image", str(sibling / "a.png"))


async def test_symlink_escape(media: Media, tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(png())
    (tmp_path / "in" / "innocent.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(InputError, match="outside the allowed input folders") as info:
        await media.resolve("image", str(tmp_path / "in" / "innocent.png"))
    assert_clean(info.value)


async def test_directory_symlink_escape(media: Media, tmp_path: Path) -> None:
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "a.png").write_bytes(png())
    (tmp_path / "in" / "shared").symlink_to(tmp_path / "private", target_is_directory=True)
    with pytest.raises(InputError, match="outside the allowed input folders"):
        await media.resolve("image", str(tmp_path / "in" / "shared" / "a.png"))


async def test_dangling_symlink(media: Media, tmp_path: Path) -> None:
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "in" / "never.png")
    with pytest.raises(InputError, match="file not found"):
        await media.resolve("image", str(tmp_path / "in" / "gone.png"))


async def test_missing_file(media: Media, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as info:
        await media.resolve("image", str(tmp_path / "in" / "nope.png"))
    assert_clean(info.value)


async def test_directory_is_not_a_file(media: Media, tmp_path: Path) -> None:
    (tmp_path / "in" / "dir").mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        await media.resolve("image", str(tmp_path / "in" / "dir"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
async def test_fifo_is_not_read(media: Media, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "in" / "pipe.png")
    with pytest.raises(InputError, match="not a regular file"):
        await media.resolve("image", str(tmp_path / "in" / "pipe.png"))


async def test_non_image_file(media: Media, tmp_path: Path) -> None:
    (tmp_path / "in" / "notes.png").write_text("definitely not a png")
    with pytest.raises(InputError, match=r"is not an image \(PNG, JPEG, WebP") as info:
        await media.resolve("image", str(tmp_path / "in" / "notes.png"))
    assert_clean(info.value)


async def test_exotic_format_is_refused(media: Media, tmp_path: Path) -> None:
    """Pillow can parse EPS (via Ghostscript) and more: only common photo formats are opened."""
    (tmp_path / "in" / "a.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(InputError, match="is not an image"):
        await media.resolve("image", str(tmp_path / "in" / "a.eps"))


async def test_oversized_file(media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = png(64, 64)
    (tmp_path / "in" / "big.png").write_bytes(data)
    monkeypatch.setattr(media_module, "MAX_INPUT_IMAGE_BYTES", len(data) - 1)
    with pytest.raises(InputError, match="is larger than") as info:
        await media.resolve("image", str(tmp_path / "in" / "big.png"))
    assert_clean(info.value)


async def test_nul_byte_in_path(media: Media) -> None:
    with pytest.raises(InputError, match="not a valid file path"):
        await media.resolve("image", "a\x00b.png")


async def test_empty_reference(media: Media) -> None:
    with pytest.raises(InputError, match="empty"):
        await media.resolve("image", "  ")


# -------------------------------------------------------------- data URIs


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("data:image/png;base64,!!!not-base64!!!", "does not contain valid base64"),
        ("data:image/png;base64,iVBORw0KGgo=A", "does not contain valid base64"),
        ("data:text/plain;base64,aGVsbG8=", "'text/plain', not an image"),
        ("data:,hello", "'text/plain', not an image"),
        ("data:application/pdf;base64,JVBERi0=", "not an image"),
        ("data:image/png,rawbytes", "not base64-encoded"),
        ("data:image/png;base64", "not a valid data URI"),
        ("data:image/png;base64," + base64.b64encode(b"hello world").decode(), "does not decode to an image"),
    ],
)
async def test_bad_data_uris(media: Media, ref: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected) as info:
        await media.resolve("image", ref)
    assert_clean(info.value)
    assert len(str(info.value)) < 400


async def test_data_uri_too_large(media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    data = png(64, 64)
    monkeypatch.setattr(media_module, "MAX_INPUT_IMAGE_BYTES", len(data) // 2)
    with pytest.raises(InputError, match="is larger than") as info:
        await media.resolve("image", "data:image/png;base64," + base64.b64encode(data).decode())
    assert_clean(info.value)


async def test_data_uri_origin_is_short(media: Media) -> None:
    ref = "data:image/png;base64," + base64.b64encode(png(300, 300)).decode()
    image = await media.resolve("image", ref)
    assert len(image.origin) <= 43


# -------------------------------------------------------------- downloads


class Recorder:
    """A MockTransport handler that records what was fetched."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond or (
            lambda r: httpx.Response(200, content=png(), headers={"content-type": "image/png"})
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/image/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/a.png",
        "http://[::1]/a.png",
        "http://2130706433/a.png",
        "http://localhost/a.png",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        f"http://user:pw@{PUBLIC_IP}/a.png",
    ],
)
async def test_untrusted_private_download_is_refused(media: Media, url: str) -> None:
    recorder = Recorder()
    async with recorder.client() as client:
        with pytest.raises(ProviderError) as info:
            await media.save_outputs(
                make_job(),
                [RemoteOutput(url=url)],
                client,
                trusted=frozenset({"https://api.provider.test:443"}),
            )
    assert info.value.code == "download_refused"
    assert info.value.retryable is False
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("provider", "output", "trusted"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/image/a.png", True),
        ("http://127.0.0.1:8000/api/v1", "HTTP://127.0.0.1:8000/image/a.png", True),
        ("http://genapi.internal:8000", "http://GENAPI.internal.:8000/image/a.png", True),
        ("https://api.internal", "https://api.internal:443/out.png", True),
        ("http://[::1]:8000", "http://[::1]:8000/a.png", True),
        # The provider's host on another port or scheme is not the provider.
        ("http://127.0.0.1:8000", "http://127.0.0.1:6379/a.png", False),
        ("http://127.0.0.1:8000", "http://127.0.0.1/a.png", False),
        ("https://api.internal", "http://api.internal/out.png", False),
        ("https://api.internal", "https://api.internal:8443/out.png", False),
        ("http://[::1]:8000", "http://[::1]:22/a.png", False),
    ],
)
async def test_trust_is_the_providers_origin_not_its_host(
    media: Media, monkeypatch: pytest.MonkeyPatch, provider: str, output: str, trusted: bool
) -> None:
    """A private address is fetched only from the provider's own origin: scheme, host and port."""

    async def private(host: str, port: int) -> list[ipaddress.IPv4Address]:
        return [ipaddress.IPv4Address("10.1.2.3")]

    monkeypatch.setattr(media_module, "_lookup", private)  # the DNS answer, not callsheet's logic
    recorder = Recorder()
    async with recorder.client() as client:
        own = media_module.origin(provider)
        assert own is not None
        if trusted:
            [saved] = await media.save_outputs(make_job(), [RemoteOutput(url=output)], client, trusted={own})
            assert saved.mime_type == "image/png"
        else:
            with pytest.raises(ProviderError) as info:
                await media.save_outputs(make_job(), [RemoteOutput(url=output)], client, trusted={own})
            assert info.value.code == "download_refused"
    assert len(recorder.requests) == int(trusted)


async def test_private_addresses_may_be_fetched_when_allowed(open_media: Media) -> None:
    recorder = Recorder()
    async with recorder.client() as client:
        [output] = await open_media.save_outputs(
            make_job(), [RemoteOutput(url="http://10.0.0.7/image/b.png")], client
        )
        assert output.mime_type == "image/png"
    assert len(recorder.requests) == 1


async def test_redirect_to_private_address_is_refused(media: Media) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data"})

    recorder = Recorder(respond)
    async with recorder.client() as client:
        with pytest.raises(ProviderError, match="non-public") as info:
            await media.save_outputs(
                make_job(),
                [RemoteOutput(url="https://api.provider.test/out/1")],
                client,
                trusted=frozenset({"https://api.provider.test:443"}),
            )
    assert info.value.code == "download_refused"
    assert [r.url.host for r in recorder.requests] == ["api.provider.test"]


async def test_redirect_loop_is_cut(media: Media) -> None:
    recorder = Recorder(lambda r: httpx.Response(302, headers={"location": "/again"}))
    async with recorder.client() as client:
        with pytest.raises(BadResponse, match="redirected more than"):
            await media.save_outputs(make_job(), [RemoteOutput(url=f"https://{PUBLIC_IP}/x")], client)
    assert len(recorder.requests) == media_module.MAX_REDIRECTS + 1


async def test_dns_failure_of_output_host_is_retryable(media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_module.anyio, "getaddrinfo", fake_dns({}))
    async with Recorder().client() as client:
        with pytest.raises(TransportError) as info:
            await media.save_outputs(make_job(), [RemoteOutput(url="https://cdn.gone.test/a.png")], client)
    assert info.value.retryable is True
    assert info.value.maybe_sent is False


async def test_download_size_cap_by_content_length(media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_module, "MAX_DOWNLOAD_BYTES", 1000)
    recorder = Recorder(
        lambda r: httpx.Response(
            200, content=b"\x89PNG" + b"\x00" * 5000, headers={"content-type": "image/png"}
        )
    )
    async with recorder.client() as client:
        with pytest.raises(BadResponse, match="larger than the download cap") as info:
            await media.save_outputs(make_job(), [RemoteOutput(url=f"https://{PUBLIC_IP}/big.png")], client)
    assert info.value.retryable is False


async def test_download_size_cap_while_streaming(
    media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media_module, "MAX_DOWNLOAD_BYTES", 10_000)
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b"\x00" * 1024

    recorder = Recorder(
        lambda r: httpx.Response(200, content=endless(), headers={"content-type": "video/mp4"})
    )
    job = make_job()
    async with recorder.client() as client:
        with pytest.raises(BadResponse, match="larger than the download cap"):
            await media.save_outputs(job, [RemoteOutput(url=f"https://{PUBLIC_IP}/v.mp4")], client)
    assert len(sent) < 20
    job_dir = tmp_path / "home" / "media" / job.job_id
    assert [p.name for p in job_dir.iterdir()] == [".callsheet-caller"]  # the partial file is gone


async def test_inline_output_size_cap(media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_module, "MAX_DOWNLOAD_BYTES", 10)
    async with Recorder().client() as client:
        with pytest.raises(BadResponse, match="larger than"):
            await media.save_outputs(make_job(), [RemoteOutput(data=png())], client)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html>login page</html>"),
        ("application/json", b'{"error": "expired"}'),
        ("application/octet-stream", b"MZ\x90\x00 an executable"),
        ("image/png", b"<html>not really a png</html>"),
        ("", b"plain bytes"),
    ],
)
async def test_wrong_content_is_refused(media: Media, content_type: str, body: bytes) -> None:
    headers = {"content-type": content_type} if content_type else {}
    recorder = Recorder(lambda r: httpx.Response(200, content=body, headers=headers))
    job = make_job()
    async with recorder.client() as client:
        with pytest.raises(BadResponse) as info:
            await media.save_outputs(job, [RemoteOutput(url=f"https://{PUBLIC_IP}/a")], client)
    assert info.value.retryable is False
    assert not [p for p in (media.settings.media_dir / job.job_id).iterdir() if p.name.startswith("output_")]


async def test_inline_garbage_is_refused(media: Media) -> None:
    async with Recorder().client() as client:
        with pytest.raises(BadResponse, match="neither an image nor a video"):
            await media.save_outputs(
                make_job(), [RemoteOutput(data=b"<script>", mime_type="text/html")], client
            )


@pytest.mark.parametrize("job_id", ["../escape", "..", "a/b", "/abs"])
async def test_never_writes_outside_media_dir(media: Media, tmp_path: Path, job_id: str) -> None:
    async with Recorder().client() as client:
        with pytest.raises(ProviderError) as info:
            await media.save_outputs(make_job(job_id), [RemoteOutput(data=png())], client)
    assert info.value.code == "storage_error"
    assert not (tmp_path / "home" / "escape").exists()
    assert not (tmp_path / "home" / "output_0.png").exists()


async def test_tampered_output_paths_are_not_read(media: Media, store: FakeStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(png())
    job = make_job().model_copy(
        update={
            "status": JobStatus.SUCCEEDED,
            "outputs": [
                Output(
                    uri="callsheet://jobs/x/outputs/0",
                    path=str(secret),
                    mime_type="image/png",
                    bytes=1,
                    sha256="0",
                )
            ],
        }
    )
    store.jobs[job.job_id] = job
    with pytest.raises(NotFound):
        media.output_file(job, 0)
    assert media.thumbnail(job.outputs[0]) is None
    with pytest.raises(InputError, match="missing"):
        await media.resolve("image", f"callsheet://jobs/{job.job_id}/outputs/0")


class Trickle(httpx.AsyncByteStream):
    """An output body that arrives one byte every 10 ms and never ends."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield b"\x89"
            await anyio.sleep(0.01)


async def test_a_download_that_never_ends_meets_its_deadline(media: Media) -> None:
    recorder = Recorder(
        lambda r: httpx.Response(200, stream=Trickle(), headers={"content-type": "image/png"})
    )
    async with recorder.client() as client:
        with pytest.raises(TransportError, match=r"did not finish within 0\.2 s") as info:
            await media.save_outputs(
                make_job(), [RemoteOutput(url=f"https://{PUBLIC_IP}/slow.png")], client, deadline=0.2
            )
    assert info.value.retryable and not info.value.maybe_sent
