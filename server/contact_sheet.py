"""Contact sheets: a self-contained HTML page and a PNG grid of every output of a shoot.

Pillow is loaded when a sheet is drawn, not by every start (server/media.py says why).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server import paths
from server.media import thumb_path
from server.models import Shoot, credits_text

if TYPE_CHECKING:
    from PIL import Image, ImageFont

CELL = 256
CAPTION = 40
COLUMNS = 4
HEADER_AT = (12, 12)
LINE_HEIGHT = 26
"""Of the shoot's name in the PNG header (its font is 20 px)."""
LOOK_CSS = Path(__file__).with_name("look.css")
"""callsheet's look, shared with the board in the chat."""
CAPTION_SIZE = 13


def header_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The shoot name's font: Pillow's own scalable font at a legible size, so that every character of
    the name (hyphens, spaces) is drawn as typed."""
    from PIL import ImageFont

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
                        "image": _thumb(Path(output.path)),
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
    from PIL import Image

    if path.suffix.lower() in (".mp4", ".webm", ".mov"):
        return _video_frame(path)
    thumb = thumb_path(path)
    source = thumb if thumb.exists() else path
    try:
        with Image.open(source) as opened:
            image = opened.convert("RGB")
        image.thumbnail((CELL, CELL))
        return image
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def header_lines(name: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    """The shoot's name in lines that fit `width`, broken between words where it can be (inside a
    word too long for a line), so that the whole name is drawn, never cut off at the edge."""
    lines: list[str] = []
    line = ""
    for word in name.split(" "):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:
            if line and font.getlength(line + char) > width:
                lines.append(line)
                line = ""
            line += char
    return [*lines, line]


def render(shoot: Shoot, prompts: dict[str, str]) -> tuple[str, bytes]:
    """(HTML, PNG bytes) for the shoot's outputs, in plan order."""
    tiles = _tiles(shoot)
    return _page(shoot, tiles, prompts), _grid(shoot, tiles)


def _grid(shoot: Shoot, tiles: list[dict[str, Any]]) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    font, big = ImageFont.load_default(size=CAPTION_SIZE), header_font()
    status = f"{shoot.status.value} | {credits_text(shoot.credits_used)}"
    width = COLUMNS * CELL
    lines = header_lines(shoot.name, big, width - 2 * HEADER_AT[0] - font.getlength(status) - 24)
    header = HEADER_AT[1] + LINE_HEIGHT * len(lines) + 12
    rows = max(1, -(-len(tiles) // COLUMNS))
    grid = Image.new("RGB", (width, header + rows * (CELL + CAPTION)), "white")
    draw = ImageDraw.Draw(grid)
    for k, line in enumerate(lines):
        draw.text((HEADER_AT[0], HEADER_AT[1] + k * LINE_HEIGHT), line, fill="black", font=big)
    draw.text((width - 12, HEADER_AT[1] + 4), status, fill="dimgray", font=font, anchor="ra")
    for k, tile in enumerate(tiles):
        x, y = (k % COLUMNS) * CELL, header + (k // COLUMNS) * (CELL + CAPTION)
        image = tile["image"]
        if image is not None:
            grid.paste(image, (x + (CELL - image.width) // 2, y + (CELL - image.height) // 2))
        else:
            draw.rectangle((x + 8, y + 8, x + CELL - 8, y + CELL - 8), outline="gray")
            draw.text((x + 20, y + CELL // 2), tile["mime"], fill="gray", font=font)
        draw.text(
            (x + 6, y + CELL + 4), f"{tile['step']} #{tile['item']}.{tile['n']}", fill="black", font=font
        )
        draw.text((x + 6, y + CELL + 20), f"{tile['tool']} {tile['size']}", fill="dimgray", font=font)
    png = io.BytesIO()
    grid.save(png, format="PNG", optimize=True)
    return png.getvalue()


def _page(shoot: Shoot, tiles: list[dict[str, Any]], prompts: dict[str, str]) -> str:
    """The page, in the board's look (server/look.css): the steps with their state, then the outputs of
    each step as a grid of thumbnails linking to the files."""
    e = html.escape
    rows = []
    for step in shoot.steps:
        prompt = prompts.get(step.id, "")
        rows.append(
            f'<li><span class="step-name">{e(step.id)}</span><span class="step-tool">{e(step.tool)}</span>'
            f'<span class="pill s-{step.status.value}">{e(step.status.value)}</span>'
            + (f'<div class="note">{e(step.note)}</div>' if step.note else "")
            + (f'<div class="note"><i>{e(prompt)}</i></div>' if prompt else "")
            + "</li>"
        )
    groups = []
    for step in shoot.steps:
        cards = [_card(tile) for tile in tiles if tile["step"] == step.id]
        if cards:
            groups.append(f'<h2>{e(step.id)}</h2><div class="grid">{"".join(cards)}</div>')
    look = LOOK_CSS.read_text(encoding="utf-8")
    state = f'<span class="pill s-{shoot.status.value}">{e(shoot.status.value)}</span>'
    used = f"{credits_text(shoot.credits_used)} used of ~{credits_text(shoot.credits_estimate)} estimated"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(shoot.name)} - contact sheet</title><style>{look}
.grid {{ grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); }}
.caption {{ white-space: normal; }}</style></head>
<body><main><header><h1>{e(shoot.name)}</h1>{state}
<div class="meta">{used} - {len(tiles)} outputs - shoot {e(shoot.shoot_id)}</div></header>
<ol class="steps">{"".join(rows)}</ol>{"".join(groups)}</main></body></html>
"""


def _card(tile: dict[str, Any]) -> str:
    e = html.escape
    thumb = io.BytesIO()
    if tile["image"] is not None:
        tile["image"].save(thumb, format="JPEG", quality=80)
        src = "data:image/jpeg;base64," + base64.b64encode(thumb.getvalue()).decode()
        inner = f'<img src="{src}" alt="{e(tile["step"])} #{tile["item"]}.{tile["n"]}">'
    else:
        inner = f'<span class="kind">{e(tile["mime"])}</span>'
    credits = f" - {credits_text(tile['credits'])}" if tile["credits"] is not None else ""
    return (
        f'<figure class="cell"><a class="tile" href="{e(tile["path"].as_uri())}">{inner}</a>'
        f'<figcaption class="caption"><b>{e(tile["step"])}</b> #{tile["item"]}.{tile["n"]} '
        f"<code>{e(tile['tool'])}</code> {e(tile['size'])}{credits}</figcaption></figure>"
    )


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
