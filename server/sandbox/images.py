"""Placeholder media for the sandbox emulators: unmistakably fake, but real files of the right size.

Every image carries a "SANDBOX" banner and the caller's label lines (provider, model, output
number, size), over a gradient and a few shapes drawn from `seed` so that different jobs look
different on a contact sheet. The background is drawn small and scaled up, and PNGs are written
with light compression, so even a 2048x2048 placeholder takes well under a third of a second.

Videos are short real MP4s (H.264 through PyAV, which bundles ffmpeg); where PyAV cannot be
imported they fall back to an animated GIF, and the returned MIME type says which one it is.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

_BACKDROP = 192
"""Side of the small canvas the gradient and shapes are drawn on before scaling up."""
_VIDEO_FPS = 12
_VIDEO_SECONDS = 1.0

Colour = tuple[int, int, int]


def placeholder_png(width: int, height: int, label_lines: list[str], seed: int = 0) -> bytes:
    """A labelled placeholder PNG of exactly `width` x `height` pixels."""
    buf = io.BytesIO()
    placeholder_image(width, height, label_lines, seed).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def placeholder_jpeg(width: int, height: int, label_lines: list[str], seed: int = 0) -> bytes:
    """The same placeholder as a JPEG, for providers asked for `output_format: jpeg`."""
    buf = io.BytesIO()
    placeholder_image(width, height, label_lines, seed).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def placeholder_webp(width: int, height: int, label_lines: list[str], seed: int = 0) -> bytes:
    """The same placeholder as a WebP, for providers whose previews are WebP."""
    buf = io.BytesIO()
    placeholder_image(width, height, label_lines, seed).save(buf, format="WEBP", quality=80)
    return buf.getvalue()


STILLS: dict[str, tuple[Callable[[int, int, list[str], int], bytes], str]] = {
    "png": (placeholder_png, "image/png"),
    "jpg": (placeholder_jpeg, "image/jpeg"),
    "webp": (placeholder_webp, "image/webp"),
}
"""Each still format an emulator serves: how it is drawn, and its MIME type."""


def placeholder_image(width: int, height: int, label_lines: list[str], seed: int = 0) -> Image.Image:
    """The placeholder as an RGB Pillow image (for callers that encode it themselves)."""
    if width < 1 or height < 1:
        raise ValueError(f"placeholder size must be positive, got {width}x{height}")
    image = _backdrop(width, height, seed)
    _draw_labels(image, label_lines)
    return image


def placeholder_video(width: int, height: int, label_lines: list[str], seed: int = 0) -> tuple[bytes, str]:
    """A ~1 s labelled clip: `(mp4 bytes, "video/mp4")`, or `(gif bytes, "image/gif")` without PyAV.

    H.264 needs even dimensions, so odd sizes are rounded down to the next even number.
    """
    width, height = max(2, width - width % 2), max(2, height - height % 2)
    frames = _frames(width, height, label_lines, seed)
    try:
        return _mp4(frames), "video/mp4"
    except ImportError:
        return _gif(frames), "image/gif"


def _frames(width: int, height: int, label_lines: list[str], seed: int) -> list[Image.Image]:
    """A still placeholder with a bar sweeping across it, so a player visibly plays something."""
    still = placeholder_image(width, height, label_lines, seed)
    count = round(_VIDEO_FPS * _VIDEO_SECONDS)
    bar = max(2, width // 12)
    frames = []
    for i in range(count):
        frame = still.copy()
        x = round((width - bar) * i / max(1, count - 1))
        ImageDraw.Draw(frame).rectangle((x, 0, x + bar - 1, max(1, height // 40)), fill=(255, 255, 255))
        frames.append(frame)
    return frames


def _mp4(frames: list[Image.Image]) -> bytes:
    import av  # imported here: loading ffmpeg costs ~0.1 s that image-only callers should not pay

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_VIDEO_FPS)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for frame in frames:
            video_frame = av.VideoFrame.from_image(frame)  # type: ignore[no-untyped-call]
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def _gif(frames: list[Image.Image]) -> bytes:
    buf = io.BytesIO()
    frames[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=round(1000 / _VIDEO_FPS),
        loop=0,
    )
    return buf.getvalue()


def _backdrop(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    top, bottom = _colour(rng, 60, 200), _colour(rng, 30, 150)
    scale = _BACKDROP / max(width, height)
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    mask = Image.linear_gradient("L").rotate(rng.choice((0, 45, 90, 135)), expand=False)
    mask = mask.resize((small_w, small_h), Image.Resampling.BILINEAR)
    small = Image.composite(Image.new("RGB", mask.size, bottom), Image.new("RGB", mask.size, top), mask)
    layer = Image.new("RGBA", small.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(3, 6)):
        cx, cy = rng.uniform(0, small_w), rng.uniform(0, small_h)
        r = rng.uniform(0.1, 0.4) * max(small_w, small_h)
        box = (cx - r, cy - r, cx + r, cy + r)
        fill = (*_colour(rng, 40, 255), rng.randint(60, 140))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)
    small = Image.alpha_composite(small.convert("RGBA"), layer).convert("RGB")
    return small.resize((width, height), Image.Resampling.BILINEAR)


def _colour(rng: random.Random, low: int, high: int) -> Colour:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _draw_labels(image: Image.Image, label_lines: list[str]) -> None:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    border = max(1, min(width, height) // 100)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(255, 255, 255), width=border)
    body_size = max(6, min(width // 22, height // 14))
    title, body = _font(max(8, min(width // 7, height // 5))), _font(body_size)
    lines = [("SANDBOX", title), *((line, body) for line in label_lines)]
    sizes = [draw.textbbox((0, 0), text, font=font) for text, font in lines]
    gap = max(1, body_size // 3)
    total = sum(box[3] - box[1] for box in sizes) + gap * (len(lines) - 1)
    pad = gap * 2
    widest = max(box[2] - box[0] for box in sizes)
    y = (height - total) // 2
    panel = (
        (width - widest) // 2 - pad,
        y - pad,
        (width + widest) // 2 + pad,
        y + total + pad,
    )
    draw.rectangle(panel, fill=(0, 0, 0))
    for (text, font), box in zip(lines, sizes, strict=True):
        x = (width - (box[2] - box[0])) // 2 - box[0]
        colour = (255, 214, 0) if font is title else (255, 255, 255)
        draw.text((x, y - box[1]), text, font=font, fill=colour)
        y += box[3] - box[1] + gap


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
