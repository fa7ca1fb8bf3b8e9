"""Media: each kind of image reference, saving outputs, thumbnails and output files."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from PIL import Image

from server import media as media_module
from server.config import Settings
from server.errors import (
    AuthError,
    BadResponse,
    InputError,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    TransportError,
)
from server.media import ImageInput, Media
from server.models import JobRecord, JobStatus, Output, new_job_id, utcnow
from server.providers.base import RemoteOutput

# Marked at collection time (not only by conftest) so that parametrized async tests work.
pytestmark = pytest.mark.anyio

PUBLIC_IP = "93.184.216.34"
CDN = "cdn.provider.test"


class FakeStore:
    """Just what Media needs from a store."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}

    async def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)


def make_settings(tmp_path: Path, **extra: str) -> Settings:
    roots = tmp_path / "in"
    roots.mkdir(exist_ok=True)
    env = {"CALLSHEET_HOME": str(tmp_path / "home"), "CALLSHEET_INPUT_ROOTS": str(roots), **extra}
    return Settings.from_env(env)


def make_job(status: JobStatus = JobStatus.RUNNING, outputs: list[Output] | None = None) -> JobRecord:
    now = utcnow()
    return JobRecord(
        job_id=new_job_id(),
        provider="fashn",
        operation="tryon_max",
        status=status,
        outputs=outputs or [],
        created_at=now,
        updated_at=now,
    )


def png(width: int = 64, height: int = 48, mode: str = "RGB", color: object = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, "PNG")  # type: ignore[arg-type]
    return buffer.getvalue()


def jpeg(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 240)).save(buffer, "JPEG")
    return buffer.getvalue()


MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 200


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def media(settings: Settings, store: FakeStore) -> Media:
    return Media(settings, store)


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


# ------------------------------------------------------------------ references


async def test_public_url_is_passed_through_unfetched(media: Media) -> None:
    url = f"https://{PUBLIC_IP}/garments/dress.png?sig=abc"
    image = await media.resolve("product_image", url)
    assert image == ImageInput(field="product_image", origin=url, url=url)
    assert image.key() == url
    with pytest.raises(InputError) as info:
        image.data_uri()
    assert info.value.field == "product_image"


async def test_public_host_name_is_checked_by_dns(media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    async def public(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        assert (host, port) == ("images.example.test", 443)
        return [(2, 1, 6, "", (PUBLIC_IP, port))]

    monkeypatch.setattr(media_module.anyio, "getaddrinfo", public)
    image = await media.resolve("image", "https://images.example.test/a.png")
    assert image.url == "https://images.example.test/a.png"


async def test_data_uri(media: Media) -> None:
    data = png()
    ref = "data:image/png;base64," + base64.b64encode(data).decode()
    image = await media.resolve("model_image", ref)
    assert image.data == data
    assert image.mime_type == "image/png"
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.key() == f"sha256:{image.sha256}"
    assert image.url is None
    assert len(image.origin) <= 43 and image.origin.startswith("data:image/png;base64,")
    assert image.data_uri() == ref


async def test_data_uri_type_comes_from_the_bytes(media: Media) -> None:
    ref = "data:image/png;base64," + base64.b64encode(jpeg()).decode()
    image = await media.resolve("image", ref)
    assert image.mime_type == "image/jpeg"


async def test_local_file_absolute_home_and_relative(
    media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = jpeg()
    (tmp_path / "in" / "shoot").mkdir()
    target = tmp_path / "in" / "shoot" / "dress.jpg"
    target.write_bytes(data)

    image = await media.resolve("product_image", str(target))
    assert (image.data, image.mime_type) == (data, "image/jpeg")
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.origin == str(target)

    monkeypatch.setenv("HOME", str(tmp_path / "in"))
    assert (await media.resolve("product_image", "~/shoot/dress.jpg")).data == data

    monkeypatch.chdir(tmp_path / "in" / "shoot")
    assert (await media.resolve("product_image", "dress.jpg")).data == data
    assert (await media.resolve("product_image", "./dress.jpg")).data == data


async def test_symlink_inside_roots_is_followed(media: Media, tmp_path: Path) -> None:
    real = tmp_path / "in" / "real.png"
    real.write_bytes(png())
    link = tmp_path / "in" / "link.png"
    link.symlink_to(real)
    assert (await media.resolve("image", str(link))).data == real.read_bytes()


async def test_several_input_roots(tmp_path: Path, store: FakeStore) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "x.png").write_bytes(png())
    settings = Settings.from_env(
        {"CALLSHEET_HOME": str(tmp_path / "home"), "CALLSHEET_INPUT_ROOTS": f"{a}{os.pathsep}{b}"}
    )
    assert (await Media(settings, store).resolve("image", str(b / "x.png"))).mime_type == "image/png"


async def test_earlier_output_reference(media: Media, store: FakeStore) -> None:
    job = make_job()
    url = f"https://{CDN}/out/0.png"
    data = png(30, 20)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data, headers={"content-type": "image/png"})

    async with client_for(handler) as client:
        outputs = await media.save_outputs(
            job, [RemoteOutput(url=url)], client, trusted=frozenset({f"https://{CDN}:443"})
        )
    store.jobs[job.job_id] = job.model_copy(update={"status": JobStatus.SUCCEEDED, "outputs": outputs})

    ref = f"callsheet://jobs/{job.job_id}/outputs/0"
    image = await media.resolve("model_image", ref)
    assert image.data == data
    assert image.mime_type == "image/png"
    assert image.sha256 == outputs[0].sha256
    assert image.source_url == url
    assert image.origin == ref
    assert image.key() == f"sha256:{outputs[0].sha256}"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("callsheet://jobs/jnope/outputs/0", "unknown job"),
        ("callsheet://jobs/{id}/outputs/3", "has outputs 0..0"),
        ("callsheet://jobs/{id}/outputs/x", "not an output reference"),
        ("callsheet://shoots/s1", "not an output reference"),
    ],
)
async def test_bad_output_references(media: Media, store: FakeStore, ref: str, expected: str) -> None:
    job = make_job()
    async with client_for(lambda r: httpx.Response(404)) as client:
        outputs = await media.save_outputs(job, [RemoteOutput(data=png())], client)
    store.jobs[job.job_id] = job.model_copy(update={"status": JobStatus.SUCCEEDED, "outputs": outputs})
    with pytest.raises(InputError) as info:
        await media.resolve("image", ref.replace("{id}", job.job_id))
    assert expected in str(info.value)
    assert str(info.value).startswith("image: ")
    assert "job_status" in str(info.value) or "callsheet://jobs/{job_id}/outputs/{n}" in str(info.value)


async def test_output_reference_of_unfinished_job(media: Media, store: FakeStore) -> None:
    job = make_job(JobStatus.RUNNING)
    store.jobs[job.job_id] = job
    with pytest.raises(InputError, match=r"is running, not succeeded.*job_wait"):
        await media.resolve("image", f"callsheet://jobs/{job.job_id}/outputs/0")


async def test_output_reference_to_a_video_is_refused(media: Media, store: FakeStore) -> None:
    job = make_job()
    async with client_for(lambda r: httpx.Response(404)) as client:
        outputs = await media.save_outputs(job, [RemoteOutput(data=MP4)], client)
    store.jobs[job.job_id] = job.model_copy(update={"status": JobStatus.SUCCEEDED, "outputs": outputs})
    with pytest.raises(InputError, match="video/mp4 file, not an image"):
        await media.resolve("image", f"callsheet://jobs/{job.job_id}/outputs/0")


# ------------------------------------------------------------------- outputs


def assert_in_media(settings: Settings, job: JobRecord, output: Output, n: int) -> Path:
    path = Path(output.path)
    assert path.is_absolute()
    assert path.parent == settings.media_dir / job.job_id
    assert path.name.startswith(f"output_{n}.")
    assert path.is_file()
    return path


async def test_save_outputs_from_url(media: Media, settings: Settings) -> None:
    job = make_job()
    data = png(300, 200)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=data, headers={"content-type": "image/png"})

    url = f"https://{CDN}/outputs/abc.png"
    async with client_for(handler) as client:
        [output] = await media.save_outputs(
            job, [RemoteOutput(url=url)], client, trusted=frozenset({f"https://{CDN}:443"})
        )
    assert [str(r.url) for r in seen] == [url]
    assert output.uri == f"callsheet://jobs/{job.job_id}/outputs/0"
    assert output.source_url == url
    assert (output.mime_type, output.width, output.height) == ("image/png", 300, 200)
    assert output.bytes == len(data)
    assert output.sha256 == hashlib.sha256(data).hexdigest()
    path = assert_in_media(settings, job, output, 0)
    assert path.suffix == ".png"
    assert path.read_bytes() == data
    assert (path.parent / "output_0.thumb.jpg").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


async def test_save_outputs_from_public_ip_and_inline(media: Media, settings: Settings) -> None:
    job = make_job()
    first, second = jpeg(80, 60), png(10, 10)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=first, headers={"content-type": "image/jpeg; charset=binary"})

    async with client_for(handler) as client:
        outputs = await media.save_outputs(
            job,
            [RemoteOutput(url=f"http://{PUBLIC_IP}/x"), RemoteOutput(data=second, mime_type="image/png")],
            client,
        )
    assert [o.mime_type for o in outputs] == ["image/jpeg", "image/png"]
    assert [Path(o.path).suffix for o in outputs] == [".jpg", ".png"]
    assert outputs[1].source_url is None
    assert outputs[1].sha256 == hashlib.sha256(second).hexdigest()
    assert (outputs[1].width, outputs[1].height, outputs[1].bytes) == (10, 10, len(second))
    for n, output in enumerate(outputs):
        assert_in_media(settings, job, output, n)


async def test_save_video_output(media: Media, settings: Settings) -> None:
    job = make_job()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MP4, headers={"content-type": "video/mp4"})

    async with client_for(handler) as client:
        [output] = await media.save_outputs(
            job, [RemoteOutput(url=f"https://{CDN}/v.mp4")], client, trusted=frozenset({f"https://{CDN}:443"})
        )
    assert (output.mime_type, output.width, output.height) == ("video/mp4", None, None)
    assert assert_in_media(settings, job, output, 0).suffix == ".mp4"
    assert media.thumbnail(output) is None


async def test_octet_stream_is_accepted_when_it_is_an_image(media: Media) -> None:
    job = make_job()
    data = png(20, 20)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data, headers={"content-type": "application/octet-stream"})

    async with client_for(handler) as client:
        [output] = await media.save_outputs(
            job, [RemoteOutput(url=f"https://{CDN}/blob")], client, trusted=frozenset({f"https://{CDN}:443"})
        )
    assert output.mime_type == "image/png"


async def test_redirect_to_a_public_cdn_is_followed(media: Media) -> None:
    job = make_job()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.provider.test":
            return httpx.Response(302, headers={"location": f"https://{PUBLIC_IP}/file.png"})
        return httpx.Response(200, content=png(), headers={"content-type": "image/png"})

    async with client_for(handler) as client:
        [output] = await media.save_outputs(
            job,
            [RemoteOutput(url="https://api.provider.test/image/1")],
            client,
            trusted=frozenset({"https://api.provider.test:443"}),
        )
    assert output.source_url == "https://api.provider.test/image/1"
    assert output.mime_type == "image/png"


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(404, ProviderRejected, False), (403, AuthError, False), (500, ProviderUnavailable, True)],
)
async def test_http_errors_map_to_provider_errors(
    media: Media, status: int, error: type[Exception], retryable: bool
) -> None:
    job = make_job()
    async with client_for(lambda r: httpx.Response(status, text="nope")) as client:
        with pytest.raises(error) as info:
            await media.save_outputs(
                job,
                [RemoteOutput(url=f"https://{CDN}/x.png")],
                client,
                trusted=frozenset({f"https://{CDN}:443"}),
            )
    exc = info.value
    assert getattr(exc, "status_code", None) == status
    assert getattr(exc, "retryable", None) is retryable
    assert getattr(exc, "provider", None) == "fashn"
    if status == 404:
        assert getattr(exc, "code", None) == "not_found"


async def test_transport_errors_are_retryable(media: Media) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client_for(handler) as client:
        with pytest.raises(TransportError) as info:
            await media.save_outputs(
                make_job(),
                [RemoteOutput(url=f"https://{CDN}/x.png")],
                client,
                trusted=frozenset({f"https://{CDN}:443"}),
            )
    assert info.value.maybe_sent is False
    assert info.value.retryable is True


async def test_output_without_url_or_data(media: Media) -> None:
    async with client_for(lambda r: httpx.Response(404)) as client:
        with pytest.raises(BadResponse, match="without a URL or data"):
            await media.save_outputs(make_job(), [RemoteOutput()], client)


# ---------------------------------------------------------------- thumbnails


async def save_inline(media: Media, data: bytes) -> Output:
    async with client_for(lambda r: httpx.Response(404)) as client:
        [output] = await media.save_outputs(make_job(), [RemoteOutput(data=data)], client)
    return output


async def test_thumbnail_of_a_large_noisy_image(media: Media) -> None:
    noise = Image.frombytes("RGB", (2048, 2048), os.urandom(2048 * 2048 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=1)
    output = await save_inline(media, buffer.getvalue())
    assert (output.width, output.height) == (2048, 2048)

    thumb = media.thumbnail(output)
    assert thumb is not None
    data, mime = thumb
    assert mime == "image/jpeg"
    assert len(data) < 100 * 1024
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        assert max(im.size) <= 512
    assert Path(output.path).with_name("output_0.thumb.jpg").read_bytes() == data


async def test_thumbnail_keeps_aspect_and_flattens_alpha_on_white(media: Media) -> None:
    output = await save_inline(media, png(1000, 250, mode="RGBA", color=(0, 0, 0, 0)))
    thumb = media.thumbnail(output)
    assert thumb is not None
    with Image.open(io.BytesIO(thumb[0])) as im:
        assert im.size == (512, 128)
        assert all(c > 245 for c in im.convert("RGB").getpixel((10, 10)))  # type: ignore[union-attr]


async def test_thumbnail_is_rebuilt_when_the_cache_is_missing(media: Media) -> None:
    output = await save_inline(media, png(600, 600))
    cached = Path(output.path).with_name("output_0.thumb.jpg")
    cached.unlink()
    thumb = media.thumbnail(output)
    assert thumb is not None
    assert cached.read_bytes() == thumb[0]


async def test_small_image_thumbnail_is_not_enlarged(media: Media) -> None:
    output = await save_inline(media, png(100, 50))
    thumb = media.thumbnail(output)
    assert thumb is not None
    with Image.open(io.BytesIO(thumb[0])) as im:
        assert im.size == (100, 50)


# -------------------------------------------------------------- output files


async def test_output_file(media: Media) -> None:
    data = png()
    async with client_for(lambda r: httpx.Response(404)) as client:
        job = make_job()
        outputs = await media.save_outputs(job, [RemoteOutput(data=data), RemoteOutput(data=MP4)], client)
    job = job.model_copy(update={"status": JobStatus.SUCCEEDED, "outputs": outputs})
    path, mime = media.output_file(job, 0)
    assert (path.read_bytes(), mime) == (data, "image/png")
    assert media.output_file(job, 1)[1] == "video/mp4"
    with pytest.raises(NotFound):
        media.output_file(job, 2)
    with pytest.raises(NotFound):
        media.output_file(job, -1)
    await anyio.Path(outputs[0].path).unlink()
    with pytest.raises(NotFound, match="missing"):
        media.output_file(job, 0)


async def test_streamed_download_without_content_length(media: Media) -> None:
    data = png(50, 50)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 7):
            yield data[i : i + 7]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(), headers={"content-type": "image/png"})

    async with client_for(handler) as client:
        [output] = await media.save_outputs(
            make_job(),
            [RemoteOutput(url=f"https://{CDN}/s.png")],
            client,
            trusted=frozenset({f"https://{CDN}:443"}),
        )
    assert output.sha256 == hashlib.sha256(data).hexdigest()
    assert output.bytes == len(data)
