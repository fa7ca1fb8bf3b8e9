"""Uploads for remote clients: an image's bytes in (`POST /uploads`, authenticated), a
`callsheet://uploads/{sha256}` reference out, usable in any image argument by that caller only, with
the checks a local file gets."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest
from mcp_types import TextContent
from PIL import Image

from server.policy import MAX_INPUT_IMAGE_BYTES
from tests.servers import free_port, mcp_client, server_env, serving, wait_healthy

pytestmark = pytest.mark.anyio


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (10, 160, 90)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_an_upload_is_a_reference_its_caller_alone_can_use(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path, CALLSHEET_HTTP_TOKEN="alice-token,bob-token")

    image = png()
    with serving(tmp_path, "--port", str(port), env=env) as proc:
        await wait_healthy(proc, port)
        async with httpx.AsyncClient(timeout=60) as http:
            alice = {"Authorization": "Bearer alice-token"}
            uploaded = await http.post(f"{base}/uploads", content=image, headers=alice)
            assert uploaded.status_code == 201, uploaded.text
            answer = uploaded.json()
            digest = hashlib.sha256(image).hexdigest()
            assert answer == {
                "uri": f"callsheet://uploads/{digest}",
                "sha256": digest,
                "bytes": len(image),
                "mime_type": "image/png",
            }
            assert (await http.post(f"{base}/uploads", content=image)).status_code == 401  # no token
            text = await http.post(f"{base}/uploads", content=b"not an image at all", headers=alice)
            assert text.status_code == 400 and "not an image" in text.json()["error_description"]
            huge = await http.post(
                f"{base}/uploads", content=b"\0" * (MAX_INPUT_IMAGE_BYTES + 1), headers=alice
            )
            assert huge.status_code == 413
        async with mcp_client(f"{base}/mcp", "alice-token") as client:
            swapped = await client.call_tool(
                "fashn_model_swap", {"model_image": answer["uri"], "wait_seconds": 30}
            )
            assert (swapped.structured_content or {}).get("status") == "succeeded", swapped.content
        async with mcp_client(f"{base}/mcp", "bob-token") as client:
            theirs = await client.call_tool(
                "fashn_model_swap", {"model_image": answer["uri"], "wait_seconds": 0}
            )
            said = " ".join(c.text for c in theirs.content if isinstance(c, TextContent))
            assert theirs.is_error and "names no upload of yours" in said and "POST" in said
