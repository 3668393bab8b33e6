"""The HTTP side of ``mpanet-tf serve``: a Starlette application on uvicorn.

Endpoints (JSON unless said otherwise; errors are ``{"error": "<one line>"}`` with a 4xx status):

- ``POST /v1/embed``: one image (raw body, or multipart field ``image``) -> ``{"embedding": [D
  floats], "dim": D}``, the embedder's output (what ``search --index`` computes for the query).
- ``POST /v1/search``: one image, with ``top_k`` (default 10), ``camera`` and ``modality`` (repeated
  or comma-separated), ``since``/``until`` (ISO 8601), ``ann``, ``nprobe`` as query parameters or
  form fields -> ``{"results": [{"rank", "distance", "entry_id", "person_id", "camera",
  "modality", "time", "source", "thumbnail"}], "gallery_size", ...}``.
- ``POST /v1/gallery``: one image (raw body) or several (multipart fields ``image``), with
  optional ``person_id``, ``camera``, ``modality``, ``time`` -> ``{"added": [entry ids], "count"}``,
  answered once the images are durably in the index.
- ``GET /v1/gallery``: count, cameras, modalities and whether capture times are known (the page's
  filters).
- ``GET /v1/gallery/{entry_id}/thumbnail``: a JPEG thumbnail of an entry's image, by integer id.
- ``GET /healthz`` (open), ``GET /metrics`` (Prometheus text), ``GET /`` (the page, open).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import signal
import socket
import time
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mpanet_tf.data.capture_time import iso_utc, parse_time
from mpanet_tf.data.images import MAX_PIXELS
from mpanet_tf.errors import BadImageError, ConfigError, MPANetError
from mpanet_tf.index.store_interface import SearchFilter
from mpanet_tf.serve.security import BodyLimit, TokenGate, check_bind, gallery_file, read_token, source_roots
from mpanet_tf.serve.service import Query, SearchService, Upload

STATIC = Path(__file__).parent / "static"
MODALITIES = ("visible", "infrared")
#: Largest ``top_k`` a search may ask for.
MAX_TOP_K = 1000
THUMBNAIL_HEIGHT = 256


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


# ------------------------------------------------------------------ parameters
def _values(fields: dict, name: str) -> list[str]:
    return [part.strip() for value in fields.get(name, []) for part in str(value).split(",") if part.strip()]


def _one(fields: dict, name: str) -> str | None:
    values = _values(fields, name)
    if len(values) > 1:
        raise HTTPException(400, f"{name} was given {len(values)} times; give it once")
    return values[0] if values else None


def _integer(fields: dict, name: str, low: int, high: int | None = None, default=None):
    value = _one(fields, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, got {value[:40]!r}") from None
    if number < low or (high is not None and number > high):
        raise HTTPException(400, f"{name} must be between {low} and {high or 'any'}, got {number}")
    return number


def _boolean(fields: dict, name: str) -> bool:
    value = (_one(fields, name) or "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise HTTPException(400, f"{name} must be true or false, got {value[:40]!r}")
    return value in ("true", "1", "yes")


def _time(fields: dict, name: str):
    """The ISO 8601 time of field ``name`` as an aware UTC datetime, None when absent."""
    value = _one(fields, name)
    if value is None or value == "":
        return None
    try:
        return parse_time(value, name)
    except ConfigError:
        raise HTTPException(400, f"{name} must be an ISO 8601 time such as 2026-12-02T13:05:00Z, "
                                 f"got {value[:40]!r}") from None


def _iso(moment):
    return iso_utc(moment) if moment is not None else None


def _modalities(fields: dict) -> tuple[str, ...] | None:
    values = _values(fields, "modality")
    for value in values:
        if value not in MODALITIES:
            raise HTTPException(400, f"modality must be visible or infrared, got {value[:40]!r}")
    return tuple(values) or None


def _filters(fields: dict) -> SearchFilter | None:
    found = SearchFilter(cameras=tuple(_values(fields, "camera")) or None, modalities=_modalities(fields),
                         since=_time(fields, "since"), until=_time(fields, "until"))
    return None if found == SearchFilter() else found


async def _uploads(request: Request, max_files: int) -> tuple[list[bytes], dict]:
    """(file bytes, fields) of a request: a raw body (fields from the query string) or multipart."""
    fields: dict = {}
    for key, value in request.query_params.multi_items():
        fields.setdefault(key, []).append(value)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=max_files, max_fields=64)
        files = []
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                files.append(await value.read())
            else:
                fields.setdefault(key, []).append(value)
        return files, fields
    body = await request.body()
    return ([body] if body else []), fields


def _one_image(files: list[bytes]) -> bytes:
    if len(files) != 1:
        raise HTTPException(400, f"send exactly one image (the raw body, or one multipart file), got {len(files)}")
    return files[0]


# ------------------------------------------------------------------- handlers
def _routes(service: SearchService, max_files: int):
    async def healthz(request):
        return JSONResponse({"status": "ok", "entries": service.store.count()})

    async def metrics(request):
        return PlainTextResponse(service.metrics.render(service.store.count()),
                                 media_type="text/plain; version=0.0.4")

    async def page(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def embed(request):
        files, _ = await _uploads(request, 1)
        vector = await service.embed(_one_image(files))
        return JSONResponse({"embedding": [float(v) for v in vector], "dim": int(vector.size)})

    async def search(request):
        files, fields = await _uploads(request, 1)
        query = Query(top_k=_integer(fields, "top_k", 1, MAX_TOP_K, 10), filters=_filters(fields),
                      ann=_boolean(fields, "ann"), nprobe=_integer(fields, "nprobe", 1, None))
        if query.nprobe is not None and not query.ann:
            raise HTTPException(400, "nprobe only applies with ann=true")
        hits = await service.search(_one_image(files), query)
        return JSONResponse({"gallery_size": service.store.count(), "top_k": query.top_k,
                             "results": [_hit(hit) for hit in hits]})

    async def gallery_add(request):
        files, fields = await _uploads(request, max_files)
        if not files:
            raise HTTPException(400, "no image to add; send an image as the body or multipart files named image")
        modality = _modalities(fields)
        if modality and len(modality) > 1:
            raise HTTPException(400, "give one modality for the images of one request")
        label = dict(person_id=_integer(fields, "person_id", 0, None), camera=_one(fields, "camera"),
                     modality=modality[0] if modality else None, time=_iso(_time(fields, "time")))
        ids = await service.add([Upload(data, **label) for data in files])
        return JSONResponse({"added": ids, "count": service.store.count()})

    async def gallery_info(request):
        entries = service.store.entries()
        return JSONResponse({
            "count": len(entries), "dim": service.store.dim, "fingerprint": service.store.fingerprint,
            "cameras": sorted({str(e["camera"]) for e in entries if e["camera"] is not None}, key=_natural),
            "modalities": sorted({e["modality"] for e in entries if e["modality"] is not None}),
            "times": any(e["time"] for e in entries),
            "persons": len({e["person_id"] for e in entries if e["person_id"] is not None})})

    async def thumbnail(request):
        entry_id = request.path_params["entry_id"]
        file = gallery_file(service.store.entry(entry_id), source_roots(service.store.sources()) + [service.uploads])
        data = await asyncio.to_thread(_thumbnail, file)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    return [
        Route("/", page), Route("/healthz", healthz), Route("/metrics", metrics),
        Route("/v1/embed", embed, methods=["POST"]), Route("/v1/search", search, methods=["POST"]),
        Route("/v1/gallery", gallery_add, methods=["POST"]), Route("/v1/gallery", gallery_info, methods=["GET"]),
        Route("/v1/gallery/{entry_id:int}/thumbnail", thumbnail),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def _natural(text: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _hit(hit) -> dict:
    entry = hit.entry
    return {"rank": hit.rank, "distance": hit.distance, "entry_id": hit.entry_id, "person_id": entry["person_id"],
            "camera": entry["camera"], "modality": entry["modality"], "time": entry["time"],
            "source": entry["path"], "thumbnail": f"/v1/gallery/{hit.entry_id}/thumbnail"}


def _thumbnail(file: Path) -> bytes:
    """A JPEG of the image at ``file``, ``THUMBNAIL_HEIGHT`` pixels high at most (re-encoded, so
    only decoded pixels ever leave the service)."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            if image.width * image.height > MAX_PIXELS:
                raise HTTPException(422, "this entry's image is larger than the decoder's pixel limit")
            image = image.convert("RGB")
            scale = min(1.0, THUMBNAIL_HEIGHT / max(1, image.height))
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.BILINEAR)
            out = io.BytesIO()
            image.save(out, "JPEG", quality=88)
            return out.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(422, "this entry's image cannot be decoded") from None


# ------------------------------------------------------ errors and metrics
def _endpoint(path: str) -> str:
    if re.fullmatch(r"/v1/gallery/\d+/thumbnail", path):
        return "/v1/gallery/{id}/thumbnail"
    if path in ("/", "/healthz", "/metrics", "/v1/embed", "/v1/search", "/v1/gallery"):
        return path
    return "/static" if path.startswith("/static/") else "other"


class RequestMetrics:
    """ASGI middleware: count every answered request and time it, per endpoint."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.observe_request(_endpoint(scope["path"]), status, time.perf_counter() - started)


async def _http_error(request, error: HTTPException):
    return _error(error.status_code, error.detail if isinstance(error.detail, str) else str(error.detail))


async def _project_error(request, error: MPANetError):
    status = 400 if isinstance(error, (BadImageError, ConfigError)) else 409
    return _error(status, str(error))


async def _unexpected(request, error: Exception):
    logging.getLogger("mpanet_tf.serve").exception("unexpected error on %s", request.url.path)
    return _error(500, "internal error; the service keeps running (see its log)")


def create_app(service: SearchService, token: str | None = None, max_upload_mb: float = 8.0,
               max_files: int = 64) -> Starlette:
    """The ASGI application of ``service`` (module docstring), with its token gate and upload limit.

    The service's batcher is started and stopped (after draining) by the app's lifespan.
    """
    @asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    return Starlette(
        routes=_routes(service, max_files),
        middleware=[Middleware(RequestMetrics, metrics=service.metrics), Middleware(TokenGate, token=token),
                    Middleware(BodyLimit, limit=int(max_upload_mb * 2**20))],
        exception_handlers={HTTPException: _http_error, MPANetError: _project_error, Exception: _unexpected},
        lifespan=lifespan)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --host "
                          "or --port") from None
    sock.listen(2048)
    return sock


def serve(model, index, host: str = "127.0.0.1", port: int = 8080, uploads=None, token_file=None,
          insecure_no_auth: bool = False, max_batch: int = 32, batch_timeout_ms: float = 5.0,
          max_upload_mb: float = 8.0, log=print) -> None:
    """``mpanet-tf serve``: check the bind rule, load the model and index, serve until SIGTERM or
    Ctrl-C; then finish the requests in flight and return (exit code 0).

    Raises:
        ConfigError: a non-loopback ``host`` without ``token_file`` or ``insecure_no_auth``, a bad
            token file, a port that cannot be bound (one line).
        GalleryIndexError: a missing, corrupt or foreign index, or one of another model.
    """
    import uvicorn

    check_bind(host, token_file, insecure_no_auth)
    token = read_token(token_file) if token_file is not None else None
    if max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be > 0, got {max_upload_mb}")
    sock = _listen(host, port)
    service = SearchService(model, index, uploads, max_batch, batch_timeout_ms)
    app = create_app(service, token, max_upload_mb)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=None,
                            lifespan="on")
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    log(f"serving {service.store.count()} gallery entries of {service.store.location} on "
        f"http://{shown}:{sock.getsockname()[1]}/ ({'token required' if token else 'no token'}; "
        f"uploads in {service.uploads})")
    # uvicorn drains, then re-raises the signal it caught; a quiet handler turns that into a normal
    # return, so a drained shutdown exits 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    log("stopped: every request in flight was answered")
