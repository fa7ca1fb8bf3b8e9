"""An in-process emulation of the self-hosted Generation API, for sandbox mode and for tests.

It serves what provider-docs/generation-api.txt documents, the way a FastAPI app would (errors as
`{"detail": ...}`, a 307 to the slashed path), so the real adapter runs against it unchanged:

    GET  /generation/tools                      the documented example list (changeable: `tools`)
    GET  /generation/generationTypes?tool=<t>   [{"name", "title"}] (or plain strings, see faults)
    POST /generation/generate_image_v2/         multipart: tool, generation_type, text fields, files
                                                -> {preview_image, stock_image, history_item_id}
    POST /generation/generate_image_v2          307 to the slashed path (FastAPI's redirect_slashes)
    GET  /user/generation-history/{id}          pending -> complete | error
    GET  /image/generation_result/{name}        the placeholder outputs (no auth, like static files)

Every API endpoint wants `Authorization: Bearer <key>` (401 otherwise). A POST names a known tool
(400 otherwise), carries the image parts that tool needs (`REQUIRED_IMAGES`; 400 when one is
missing or is not an image) and a generation type of that tool if any. An item stays pending for
its duration (scaled by `time_scale`) and then completes; it ends in error instead when any text
field contains `[sandbox:error]` or `[sandbox:error=<message>]`. The preview is a WebP, the stock
image a PNG, both labelled placeholders. The initial answer gives paths without a leading slash and
the history answer with one, as in the document; both are relative to the server's origin.

The generation types and the image parts per tool are this sandbox's inventions: the document shows
neither. `tools` / `generation_types` / `required_images` are plain attributes a test may change at
run time (`add_tool` does all three), to rehearse the adapter's discovery refresh.

With a `state_dir` (sandbox mode passes `<CALLSHEET_HOME>/sandbox`), items are kept in
`genapi.json` there, so a restarted server still finds the items it submitted; times are then
wall-clock. Finished items are forgotten after an hour.
"""

from __future__ import annotations

import io
import logging
import random
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from server.sandbox.kit import Emulator, Refusal, next_fault

log = logging.getLogger("callsheet.sandbox")

DEFAULT_TOOLS: list[dict[str, str]] = [
    {"group_tool": "fashion", "tool": "lego_clothes", "title": "Lego Clothes"},
    {"group_tool": "fashion", "tool": "mamasfit", "title": "MamasFit"},
    {"group_tool": "fashion", "tool": "lengerie", "title": "Lengerie"},
    {"group_tool": "fashion", "tool": "fashion_card", "title": "Fashion Card"},
    {"group_tool": "fashion", "tool": "fashion_swap", "title": "Fashion Swap"},
    {"group_tool": "fashion", "tool": "fashion_swap_half", "title": "Fashion Swap Half"},
    {"group_tool": "interior", "tool": "furniture", "title": "Furniture"},
    {"group_tool": "textile", "tool": "fabric", "title": "Fabric"},
    {"group_tool": "default", "tool": "default", "title": "Default"},
]
"""The document's example answer to GET /generation/tools, verbatim."""

DEFAULT_TYPES: dict[str, list[str]] = {
    "lego_clothes": ["standard"],
    "mamasfit": ["standard", "maternity"],
    "lengerie": ["standard"],
    "fashion_card": ["card", "catalog"],
    "fashion_swap": ["full_body", "upper_body", "lower_body"],
    "fashion_swap_half": ["upper_body", "lower_body"],
    "furniture": ["room", "studio"],
    "fabric": ["drape", "flat"],
    "default": ["default"],
}
DEFAULT_REQUIRED: dict[str, tuple[str, ...]] = {
    "lego_clothes": ("clothes",),
    "mamasfit": ("clothes",),
    "lengerie": ("clothes",),
    "fashion_card": ("clothes",),
    "fashion_swap": ("clothes", "person"),
    "fashion_swap_half": ("clothes", "person"),
    "furniture": ("image",),
    "fabric": ("image",),
    "default": ("image",),
}

GENERATE = "/generation/generate_image_v2"
TYPICAL_SECONDS = 12.0
"""Unscaled seconds from submission to completion (an error comes at half of it)."""
PREVIEW_SIZE = (384, 512)
STOCK_SIZE = (768, 1024)
STATE_FILE = "genapi.json"
KEEP_FINISHED = 3600.0
MAX_KEPT = 500
ERROR_MARKER = re.compile(r"\[sandbox:error(?:=([^\]]*))?\]")
DEFAULT_ERROR = "Generation failed: the worker could not process the images."
_IMAGE_NAME = re.compile(r"([A-Za-z0-9]+)_(preview|stock)\.(webp|png)")

PENDING, COMPLETE, ERROR = "pending", "complete", "error"


@dataclass
class GenApiFaults:
    """Knobs tests turn to provoke what a real deployment may do."""

    generate_errors: list[int] = field(default_factory=list)
    """HTTP statuses to answer the next POSTs with, in order (popped per call, after auth)."""
    status_errors: list[int] = field(default_factory=list)
    """The same for the history endpoint."""
    tools_errors: list[int] = field(default_factory=list)
    """The same for the tool list."""
    types_as_strings: bool = False
    """Answer generationTypes with `["a", "b"]` instead of `[{"name": "a", "title": "A"}]`."""
    slashless_generate: bool = False
    """Serve generation at the slashless path and redirect the slashed one to it (a FastAPI route
    declared without the slash), instead of the other way round."""
    redirect_status: int = 307


@dataclass
class Upload:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Received:
    """One POST that reached the generation handler, as the emulator saw it."""

    path: str
    form: dict[str, str]
    files: dict[str, Upload]


@dataclass
class Item:
    id: str
    number: int
    tool: str
    generation_type: str | None
    created: float
    duration: float
    error: str | None = None

    def status(self, now: float) -> str:
        share = (now - self.created) / self.duration
        if self.error is not None and share >= 0.5:
            return ERROR
        return COMPLETE if share >= 1.0 else PENDING

    def finished_at(self) -> float:
        return self.created + self.duration * (0.5 if self.error is not None else 1.0)


@dataclass
class GenApiStats:
    """What the client asked, for tests."""

    tools_calls: int = 0
    types_calls: int = 0
    generate_calls: int = 0
    """Every POST to either generation path, redirected and refused ones included."""
    status_calls: int = 0
    image_calls: int = 0
    paths: list[str] = field(default_factory=list)
    """Every request's full path (mount prefix included), in order."""
    received: list[Received] = field(default_factory=list)
    items: dict[str, Item] = field(default_factory=dict)


class _SavedState(BaseModel):
    """The content of `<state_dir>/genapi.json`."""

    version: Literal[1] = 1
    next_number: int
    items: list[Item]


class GenApiEmulator(Emulator):
    title = "Generation API"
    state_file = STATE_FILE

    def __init__(
        self,
        *,
        faults: GenApiFaults | None = None,
        **common: Any,
    ) -> None:
        """See `Emulator`; with `state_dir`, items are kept in `STATE_FILE` there."""
        super().__init__(**common)
        self.faults = faults if faults is not None else GenApiFaults()
        self.stats = GenApiStats()
        self.tools: list[dict[str, str]] = [dict(t) for t in DEFAULT_TOOLS]
        self.generation_types: dict[str, list[str]] = {k: list(v) for k, v in DEFAULT_TYPES.items()}
        self.required_images: dict[str, tuple[str, ...]] = dict(DEFAULT_REQUIRED)
        self._load()
        self.app = Starlette(
            routes=[
                Route("/generation/tools", self._tools, methods=["GET"]),
                Route("/generation/generationTypes", self._types, methods=["GET"]),
                Route(GENERATE + "/", self._generate_slashed, methods=["POST"]),
                Route(GENERATE, self._generate_slashless, methods=["POST"]),
                Route("/user/generation-history/{id}", self._history, methods=["GET"]),
                Route("/image/generation_result/{name}", self._image, methods=["GET"]),
            ]
        )

    def add_tool(
        self,
        tool: str,
        title: str,
        group_tool: str = "default",
        *,
        generation_types: list[str] | None = None,
        required_images: tuple[str, ...] = ("image",),
    ) -> None:
        """Offer one more tool from now on (the knob for discovery-refresh tests)."""
        self.tools.append({"group_tool": group_tool, "tool": tool, "title": title})
        self.generation_types[tool] = list(generation_types or ["default"])
        self.required_images[tool] = required_images

    # --- endpoints ---

    async def _tools(self, request: Request) -> Response:
        self._seen(request)
        self.stats.tools_calls += 1
        try:
            self._authorize(request)
            self._injected(self.faults.tools_errors)
        except Refusal as exc:
            return _error(exc)
        return JSONResponse(self.tools)

    async def _types(self, request: Request) -> Response:
        self._seen(request)
        self.stats.types_calls += 1
        try:
            self._authorize(request)
            tool = request.query_params.get("tool", "")
            if tool not in self._known_tools():
                raise Refusal(404, f"Unknown tool '{tool}'")
        except Refusal as exc:
            return _error(exc)
        names = self.generation_types.get(tool, [])
        if self.faults.types_as_strings:
            return JSONResponse(names)
        return JSONResponse([{"name": n, "title": n.replace("_", " ").title()} for n in names])

    async def _generate_slashed(self, request: Request) -> Response:
        if self.faults.slashless_generate:
            return self._redirect(request, GENERATE)
        return await self._generate(request)

    async def _generate_slashless(self, request: Request) -> Response:
        if not self.faults.slashless_generate:
            return self._redirect(request, GENERATE + "/")
        return await self._generate(request)

    async def _generate(self, request: Request) -> Response:
        self._seen(request)
        self.stats.generate_calls += 1
        now = self.clock()
        try:
            self._authorize(request)
            self._injected(self.faults.generate_errors)
            received = await self._read_form(request)
            self.stats.received.append(received)
            tool, gen_type = self._check(received)
        except Refusal as exc:
            return _error(exc)
        item = self._create(tool, gen_type, received, now)
        return JSONResponse(
            {
                "preview_image": f"image/generation_result/{item.id}_preview.webp",
                "stock_image": f"image/generation_result/{item.id}_stock.png",
                "history_item_id": item.id,
            }
        )

    async def _history(self, request: Request) -> Response:
        self._seen(request)
        self.stats.status_calls += 1
        try:
            self._authorize(request)
            self._injected(self.faults.status_errors)
        except Refusal as exc:
            return _error(exc)
        now = self.clock()
        item = self._lookup(request.path_params["id"], now)
        if item is None:
            return _error(Refusal(404, "History item not found"))
        status = item.status(now)
        body: dict[str, Any] = {"id": item.id, "tool": item.tool, "status": status}
        if status == COMPLETE:
            body["preview_url"] = f"/image/generation_result/{item.id}_preview.webp"
            body["stock_url"] = f"/image/generation_result/{item.id}_stock.png"
        elif status == ERROR:
            body["error"] = item.error
        return JSONResponse(body)

    async def _image(self, request: Request) -> Response:
        self._seen(request)
        self.stats.image_calls += 1
        match = _IMAGE_NAME.fullmatch(request.path_params["name"])
        now = self.clock()
        item = self._lookup(match.group(1), now) if match else None
        if match is None or item is None or item.status(now) != COMPLETE:
            return Response("Not Found", status_code=404, media_type="text/plain")
        kind, ext = match.group(2), match.group(3)
        if (kind, ext) not in (("preview", "webp"), ("stock", "png")):
            return Response("Not Found", status_code=404, media_type="text/plain")
        data = await self._render(item, kind)
        return Response(data, media_type=f"image/{ext}")

    # --- helpers ---

    def _seen(self, request: Request) -> None:
        self.stats.paths.append(request.url.path)

    def _known_tools(self) -> set[str]:
        return {t["tool"] for t in self.tools}

    def _authorize(self, request: Request) -> None:
        self.check_key(request, message="Not authenticated")

    def _injected(self, errors: list[int]) -> None:
        status = next_fault(errors)
        if status is not None:
            raise Refusal(status, f"Injected sandbox fault: HTTP {status}.")

    def _redirect(self, request: Request, path: str) -> Response:
        """FastAPI's answer on the other form of a path: the same URL (mount prefix kept) with or
        without the trailing slash."""
        self._seen(request)
        self.stats.generate_calls += 1
        bare = request.url.path.rstrip("/")
        url = request.url.replace(path=bare + "/" if path.endswith("/") else bare)
        return RedirectResponse(str(url), status_code=self.faults.redirect_status)

    async def _read_form(self, request: Request) -> Received:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise Refusal(400, "Expected multipart/form-data")
        form: dict[str, str] = {}
        files: dict[str, Upload] = {}
        async with request.form(max_files=20, max_fields=100) as data:
            for name, value in data.multi_items():
                if isinstance(value, UploadFile):
                    content = await value.read()
                    files[name] = Upload(name, value.filename or "", value.content_type or "", content)
                else:
                    form[name] = value
        return Received(path=request.url.path, form=form, files=files)

    def _check(self, received: Received) -> tuple[str, str | None]:
        tool = received.form.get("tool", "")
        if not tool:
            raise Refusal(400, "Field 'tool' is required")
        if tool not in self._known_tools():
            raise Refusal(400, f"Unknown tool '{tool}'. GET /generation/tools lists the tools.")
        gen_type = received.form.get("generation_type") or None
        types = self.generation_types.get(tool, [])
        if gen_type is not None and gen_type not in types:
            raise Refusal(400, f"Unknown generation_type '{gen_type}' for tool '{tool}'")
        for name in self.required_images.get(tool, ("image",)):
            upload = received.files.get(name)
            if upload is None:
                raise Refusal(400, f"Missing image part '{name}' for tool '{tool}'")
        for upload in received.files.values():
            if not _is_image(upload.data):
                raise Refusal(400, f"Image part '{upload.field}' is not an image")
        return tool, gen_type

    def _create(self, tool: str, gen_type: str | None, received: Received, now: float) -> Item:
        number = self.number()
        rng = random.Random(f"{self.seed}:{number}")
        error = None
        for name, value in received.form.items():
            match = ERROR_MARKER.search(value) if name != "tool" else None
            if match is not None:
                error = match.group(1) or DEFAULT_ERROR
                break
        item = Item(
            id=secrets.token_hex(6),
            number=number,
            tool=tool,
            generation_type=gen_type,
            created=now,
            duration=self.seconds(TYPICAL_SECONDS * rng.uniform(0.7, 1.3)),
            error=error,
        )
        self.stats.items[item.id] = item
        self._save(now)
        return item

    def _lookup(self, item_id: str, now: float) -> Item | None:
        item = self.stats.items.get(item_id)
        if item is None and self.state_dir is not None:
            self._load()  # another process (a server before a restart) may have created it
            item = self.stats.items.get(item_id)
        return item

    async def _render(self, item: Item, kind: str) -> bytes:
        width, height = PREVIEW_SIZE if kind == "preview" else STOCK_SIZE
        lines = [f"genapi · {item.tool}", f"{kind} {width}x{height}"]
        if item.generation_type:
            lines.append(f"type {item.generation_type}")
        seed = self.seed * 1_000_003 + item.number
        file = "webp" if kind == "preview" else "png"
        data, _ = await self.render((item.id, kind), file, width, height, lines, seed)
        return data

    # --- persistence ---

    def _load(self) -> None:
        saved = self.load(_SavedState)
        if saved is None:
            return
        for item in saved.items:
            self.stats.items.setdefault(item.id, item)
        self.next_number = max(self.next_number, saved.next_number)

    def _save(self, now: float) -> None:
        if self.state_dir is None:
            return
        self._load()  # keep what another process on the same folder added
        finished = sorted(
            (i for i in self.stats.items.values() if i.status(now) != PENDING), key=Item.finished_at
        )
        excess = len(self.stats.items) - MAX_KEPT
        for n, item in enumerate(finished):
            if n < excess or item.finished_at() <= now - KEEP_FINISHED:
                del self.stats.items[item.id]
                for kind in ("preview", "stock"):
                    self.forget_rendered((item.id, kind))
        self.save(_SavedState(next_number=self.next_number, items=list(self.stats.items.values())))


def _error(exc: Refusal) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


def _is_image(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (OSError, SyntaxError, ValueError):
        return False
    return True
