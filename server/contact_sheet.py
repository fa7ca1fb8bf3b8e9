"""Contact sheets: a self-contained HTML page and a PNG grid of every output of a shoot."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from server import paths
from server.media import thumb_path
from server.models import Shoot, credits_text

CELL = 256
CAPTION = 40
COLUMNS = 4
HEADER_AT = (12, 12)
CAPTION_SIZE = 13


def header_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The shoot name's font: Pillow's own scalable font at a legible size, so that every character of
    the name (hyphens, spaces) is drawn as typed."""
    return ImageFont.load_default(size=20)


def _tiles(shoot: Shoot) -> list[dict[str, Any]]:
    tiles = []
    for step in shoot.steps:
        for item, job in enumerate(step.jobs):
            for n, output in enumerate(job.outputs):
                tiles.append(
                    {
                        "step": step.id,
                        "item": item,
                        "n": n,
                        "tool": f"{job.provider}_{job.operation}",
                        "credits": job.credits_used,
                        "path": Path(output.path),
                        "mime": output.mime_type,
                        "size": f"{output.width}x{output.height}" if output.width else "",
                    }
                )
    return tiles


def _video_frame(path: Path) -> Image.Image | None:
    """The first frame of a video (PyAV bundles ffmpeg); None when it cannot be read."""
    try:
        import av

        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
                image.thumbnail((CELL, CELL))
                return image
    except (ImportError, OSError, ValueError):
        return None
    return None


def _thumb(path: Path) -> Image.Image | None:
    if path.suffix.lower() in (".mp4", ".webm", ".mov"):
        return _video_frame(path)
    thumb = thumb_path(path)
    source = thumb if thumb.exists() else path
    try:
        with Image.open(source) as opened:
            image = opened.convert("RGB")
        image.thumbnail((CELL, CELL))
        return image
    except (OSError, ValueError):
        return None


def render(shoot: Shoot, prompts: dict[str, str]) -> tuple[str, bytes]:
    """(HTML, PNG bytes) for the shoot's outputs, in plan order."""
    tiles = _tiles(shoot)
    font = ImageFont.load_default(size=CAPTION_SIZE)
    rows = max(1, -(-len(tiles) // COLUMNS))
    header = 48
    grid = Image.new("RGB", (COLUMNS * CELL, header + rows * (CELL + CAPTION)), "white")
    draw = ImageDraw.Draw(grid)
    draw.text(HEADER_AT, shoot.name, fill="black", font=header_font())
    draw.text(
        (COLUMNS * CELL - 12, HEADER_AT[1] + 4),
        f"{shoot.status.value} | {credits_text(shoot.credits_used)}",
        fill="dimgray",
        font=font,
        anchor="ra",
    )
    cards = []
    for k, tile in enumerate(tiles):
        x, y = (k % COLUMNS) * CELL, header + (k // COLUMNS) * (CELL + CAPTION)
        image = _thumb(tile["path"])
        if image is not None:
            grid.paste(image, (x + (CELL - image.width) // 2, y + (CELL - image.height) // 2))
        else:
            draw.rectangle((x + 8, y + 8, x + CELL - 8, y + CELL - 8), outline="gray")
            draw.text((x + 20, y + CELL // 2), tile["mime"], fill="gray", font=font)
        draw.text(
            (x + 6, y + CELL + 4), f"{tile['step']} #{tile['item']}.{tile['n']}", fill="black", font=font
        )
        draw.text((x + 6, y + CELL + 20), f"{tile['tool']} {tile['size']}", fill="dimgray", font=font)
        thumb = io.BytesIO()
        if image is not None:
            image.save(thumb, format="JPEG", quality=80)
        src = "data:image/jpeg;base64," + base64.b64encode(thumb.getvalue()).decode() if image else ""
        prompt = prompts.get(tile["step"], "")
        cards.append(
            f'<figure><a href="{html.escape(tile["path"].as_uri())}">'
            + (
                f'<img src="{src}" alt="{html.escape(tile["step"])}">'
                if src
                else f"<div class=ph>{html.escape(tile['mime'])}</div>"
            )
            + f"</a><figcaption><b>{html.escape(tile['step'])}</b> #{tile['item']}.{tile['n']} "
            f"<code>{html.escape(tile['tool'])}</code> {html.escape(tile['size'])}"
            + (f" - {credits_text(tile['credits'])}" if tile["credits"] is not None else "")
            + (f"<br><i>{html.escape(prompt)}</i>" if prompt else "")
            + "</figcaption></figure>"
        )
    steps = "".join(
        f"<li><b>{html.escape(s.id)}</b>: {s.status.value}"
        + (f" ({html.escape(s.note)})" if s.note else "")
        + "</li>"
        for s in shoot.steps
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(shoot.name)} - contact sheet</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px}}main{{display:flex;flex-wrap:wrap;gap:16px}}
figure{{width:{CELL}px;margin:0}}img{{max-width:{CELL}px;max-height:{CELL}px;display:block}}
.ph{{width:{CELL}px;height:{CELL}px;border:1px solid #ccc;display:grid;place-items:center}}
figcaption{{font-size:12px}}</style></head>
<body><h1>{html.escape(shoot.name)}</h1>
<p>Status <b>{shoot.status.value}</b> - {credits_text(shoot.credits_used)} used
(estimate {shoot.credits_estimate:g}) - {len(tiles)} outputs - shoot {html.escape(shoot.shoot_id)}</p>
<ul>{steps}</ul><main>{"".join(cards)}</main></body></html>
"""
    png = io.BytesIO()
    grid.save(png, format="PNG", optimize=True)
    return page, png.getvalue()


def step_prompts(plan: dict[str, Any]) -> dict[str, str]:
    out = {}
    for step in plan.get("steps", []):
        args = step.get("args") or {}
        text = args.get("prompt") or args.get("prompt_modifier")
        if isinstance(text, str):
            out[str(step.get("id"))] = text
    return out


def write_contact_sheet(shoot: Shoot, root: Path, folder: Path, plan: dict[str, Any] | None = None) -> Path:
    """Write contact-sheet.html and contact-sheet.png into the shoot folder (inside `root`; call from a
    worker thread)."""
    page, png = render(shoot, step_prompts(plan or {}))
    paths.make_dirs(root, folder)
    paths.write_atomic(root, folder / "contact-sheet.html", page.encode())
    target = folder / "contact-sheet.png"
    paths.write_atomic(root, target, png)
    return target
