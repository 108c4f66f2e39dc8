"""The sync server devices talk to: their manifest, the package files (resumable), metric uploads.

Endpoints (every one but ``/healthz`` needs ``Authorization: Bearer <token>`` from
:meth:`ServerState.register_device`):

* ``GET /healthz`` -> ``{"status": "ok"}``
* ``GET /v1/manifest`` -> the device's SignedManifest as JSON (a deployment manifest, or a signed hold
  order: run no model), or 204 when nothing was ever deployed; the device says what it runs in
  ``X-Device-Running`` (``<version>``, ``hold:<order id>`` or ``none``), kept per device
* ``GET /v1/packages/{model_version}/{path}`` -> the file, with ``ETag`` (its sha256) and single
  byte ranges (``bytes=N-``, ``bytes=N-M``, ``bytes=-K`` -> 206), so an interrupted download resumes
* ``POST /v1/metrics`` (a MetricWindow) -> 201 ``{"stored": true}``, or 200 with
  ``"duplicate": true`` when the window id was already stored
* ``POST /v1/feedback`` (JSON: the fields of :class:`~edge_sync.server_state.FeedbackItem` plus
  ``image_base64``) -> 201 ``{"stored": true}``, or 200 ``{"stored": false, "duplicate": true}`` when
  this device already sent an image with this sha256; 413 over the size limit (checked from
  ``Content-Length`` before the body is read; 411 without one), 422 when the bytes do not match the
  declared sha256. JSON with base64 was chosen over multipart: one body, one schema, no extra parser.

Errors are JSON ``{"detail": "..."}`` saying what to do: 401 unknown token, 403 not the device's
own (another line's model, another device's window), 404 no such file, 416 bad range, 422 invalid
window. State lives in :class:`~edge_sync.server_state.ServerState`, which the platform writes
directly; the endpoints are plain functions that FastAPI runs in its thread pool, because the state
does blocking file I/O.

Run it with ``python -m edge_sync.server --state-dir PATH [--host 127.0.0.1] [--port 8700]``. It speaks
plain HTTP: put it behind TLS (or pass uvicorn TLS options) before tokens cross a shared network.
"""

import argparse
import base64
import binascii
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import fastapi
from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from edge_sync.contract import MetricWindow
from edge_sync.server_state import (
    MAX_FEEDBACK_BYTES,
    CorruptState,
    DeviceRecord,
    FeedbackItem,
    Forbidden,
    InvalidInput,
    NotFound,
    PackageMismatch,
    ServerState,
    SyncError,
    TooLarge,
    UnknownDevice,
)

__all__ = ["DEFAULT_PORT", "MAX_BODY_BYTES", "create_app", "main"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8700
MAX_BODY_BYTES = 64 * 1024
"""Largest request body of every endpoint but feedback (whose limit follows its image size)."""
MAX_ERRORS_SHOWN = 5
_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_STATUS: dict[type[SyncError], int] = {
    UnknownDevice: 401,
    Forbidden: 403,
    NotFound: 404,
    PackageMismatch: 409,
    InvalidInput: 422,
    TooLarge: 413,
    CorruptState: 500,
}


class FeedbackUpload(FeedbackItem):
    """The body of ``POST /v1/feedback``: the sidecar fields and the image bytes in base64."""

    image_base64: str


class _RangeNotSatisfiable(Exception):
    """The Range header cannot be served for this file (HTTP 416)."""


def create_app(state: ServerState, *, max_feedback_bytes: int = MAX_FEEDBACK_BYTES) -> fastapi.FastAPI:
    """The FastAPI application serving ``state`` to devices; feedback images over ``max_feedback_bytes``
    are refused with 413."""
    app = fastapi.FastAPI(title="mfg-vision edge sync", version="1", docs_url=None, redoc_url=None)
    # base64 grows 4/3; 64 KiB more for the JSON fields around the image.
    max_feedback_body = (max_feedback_bytes + 2) // 3 * 4 + 64 * 1024

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Response:
        """Refuse an oversized body on every endpoint before it is read into memory (a 100 MB metric
        upload once took the server from 84 MB to 2.7 GB); a body needs a Content-Length."""
        is_feedback = request.url.path == "/v1/feedback"
        limit = max_feedback_body if is_feedback else MAX_BODY_BYTES
        length = request.headers.get("content-length")
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        if request.method in ("POST", "PUT", "PATCH") and (length is None or chunked):
            return JSONResponse(
                {"detail": f"{request.method} {request.url.path} without a Content-Length; send the JSON body in one piece"},
                status_code=411,
            )
        if length is not None and (not length.isdigit() or int(length) > limit):
            what = f" (images up to {max_feedback_bytes} bytes); send a smaller image" if is_feedback else (
                "; a metric window is a few hundred bytes, so this is not one"
            )
            return JSONResponse(
                {"detail": f"{request.url.path}: body of {length} bytes is over the limit of {limit}{what}"},
                status_code=413,
            )
        response: Response = await call_next(request)
        return response

    def current_device(authorization: Annotated[str | None, Header()] = None) -> DeviceRecord:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnknownDevice(
                "missing device token: send 'Authorization: Bearer <token>' with the token given at registration"
            )
        return state.authenticate(token.strip())

    Device = Annotated[DeviceRecord, Depends(current_device)]

    @app.exception_handler(SyncError)
    async def sync_error(request: Request, exc: SyncError) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        else:
            logger.info("%s %s -> %d: %s", request.method, request.url.path, status, exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Never echo the body back: the offending input could be megabytes, once per error.
        all_errors = exc.errors()
        errors = [
            {key: value for key, value in error.items() if key not in ("input", "ctx", "url")}
            for error in all_errors[:MAX_ERRORS_SHOWN]
        ]
        errors = jsonable_encoder(errors)
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        logger.info("%s %s -> 422: %d validation error(s)", request.method, request.url.path, len(all_errors))
        return JSONResponse(
            {
                "detail": (
                    f"request rejected: {len(all_errors)} invalid field(s), first {where}: {first.get('msg', '?')}; "
                    "send the body this endpoint defines (a MetricWindow for /v1/metrics, a FeedbackUpload for "
                    "/v1/feedback; see edge_sync.contract and edge_sync.server) - fix the agent, do not retry as is"
                ),
                "errors": errors,
            },
            status_code=422,
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/manifest", response_model=None)
    def manifest(
        device: Device, running: Annotated[str | None, Header(alias="X-Device-Running", max_length=200)] = None
    ) -> Response:
        if running is not None:
            state.note_running(device, running, datetime.now(UTC))
        signed = state.deployment_for(device)
        if signed is None:
            return Response(status_code=204)
        return Response(content=signed.model_dump_json(), media_type="application/json")

    @app.get("/v1/packages/{model_version}/{path:path}", response_model=None)
    def package_file(
        model_version: str,
        path: str,
        device: Device,
        range_header: Annotated[str | None, Header(alias="Range")] = None,
    ) -> Response:
        info = state.package_file_info(device, model_version, path)
        headers = {"ETag": f'"{info.sha256}"', "Accept-Ranges": "bytes"}
        try:
            span = _parse_range(range_header, info.n_bytes)
        except _RangeNotSatisfiable as exc:
            return JSONResponse(
                {"detail": str(exc)},
                status_code=416,
                headers={**headers, "Content-Range": f"bytes */{info.n_bytes}"},
            )
        start, end = span if span is not None else (0, info.n_bytes)
        handle = info.path.open("rb")  # closed by _read_span; read in chunks, never whole
        handle.seek(start)
        headers["Content-Length"] = str(end - start)
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.n_bytes}"
        return StreamingResponse(
            _read_span(handle, end - start), status_code=status, media_type="application/octet-stream", headers=headers
        )

    @app.post("/v1/metrics", response_model=None)
    def metrics(window: MetricWindow, device: Device) -> JSONResponse:
        stored = state.record_window(window, device, datetime.now(UTC))
        if stored:
            return JSONResponse({"stored": True}, status_code=201)
        logger.info("device %s re-uploaded window %r; kept the first upload", device.device_id, window.window_id)
        return JSONResponse({"stored": False, "duplicate": True}, status_code=200)

    @app.post("/v1/feedback", response_model=None)
    def feedback(upload: FeedbackUpload, device: Device) -> JSONResponse:
        if len(upload.image_base64) > max_feedback_body:
            raise TooLarge(f"feedback image {upload.image!r} is over the limit of {max_feedback_bytes} bytes")
        try:
            image = base64.b64decode(upload.image_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                f"feedback image {upload.image!r}: image_base64 is not valid base64 ({exc}); fix the agent"
            ) from exc
        item = FeedbackItem(**upload.model_dump(exclude={"image_base64"}))
        stored = state.record_feedback(item, image, device, datetime.now(UTC), max_bytes=max_feedback_bytes)
        if stored:
            return JSONResponse({"stored": True}, status_code=201)
        logger.info("device %s re-uploaded feedback image %s; kept the first upload", device.device_id, item.sha256)
        return JSONResponse({"stored": False, "duplicate": True}, status_code=200)

    return app


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The half-open byte span a single-range header asks for, or None to send the whole file.

    Several ranges are answered with the whole file (RFC 9110 lets a server ignore Range); a
    malformed single range is refused rather than ignored, because a resuming client that appends
    the answer to its partial file would corrupt it if it got the whole file unexpectedly.
    """
    if header is None:
        return None
    value = header.strip()
    if "," in value:
        return None
    match = _RANGE.fullmatch(value)
    if match is None or match.group(1) == match.group(2) == "":
        raise _RangeNotSatisfiable(
            f"Range {header!r} is not understood; send one range as 'bytes=N-' or 'bytes=N-M' (file is {size} bytes)"
        )
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix: the last K bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _RangeNotSatisfiable(f"Range {header!r} asks for no bytes of a {size}-byte file")
        return max(0, size - length), size
    start = int(first)
    if start >= size:
        raise _RangeNotSatisfiable(
            f"Range {header!r} starts at or after the end of the {size}-byte file; the download is already "
            "complete (verify its sha256) or restart it without a Range header"
        )
    if last == "":
        return start, size
    stop = int(last)
    if stop < start:
        raise _RangeNotSatisfiable(f"Range {header!r} ends before it starts; send 'bytes=N-M' with N <= M")
    return start, min(stop + 1, size)


def _read_span(handle: BinaryIO, length: int) -> Iterator[bytes]:
    """Yield ``length`` bytes from ``handle``'s position in chunks, closing it however the response ends."""
    try:
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:  # not OSError: Starlette would report that as a client disconnect
                message = f"{handle.name}: file ended {remaining} bytes early; publish the deployment again"
                logger.error(message)
                raise CorruptState(message)
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range: use 1 to 65535")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a state folder over HTTP until interrupted (SIGINT/SIGTERM); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m edge_sync.server",
        description="Serve manifests, package files and metric uploads to edge devices from a state folder.",
    )
    parser.add_argument("--state-dir", required=True, type=Path, help="server state folder (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", default=DEFAULT_PORT, type=_port, help=f"TCP port (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["critical", "error", "warning", "info", "debug"],
        help="logging level (default: info)",
    )
    args = parser.parse_args(argv)

    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = ServerState(args.state_dir)
    logger.info("serving %s on http://%s:%d", state.root, args.host, args.port)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
