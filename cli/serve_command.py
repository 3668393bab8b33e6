"""``mpanet-tf serve``: the person-search service (HTTP API, web page, metrics)."""

from __future__ import annotations

import click

from mpanet_tf.errors import ConfigError


@click.command("serve")
@click.option("--model", "model_path", required=True, type=click.Path(),
              help="The index's model: a run folder, .keras file, exported SavedModel folder, .onnx file or int8 "
                   "export (any runtime the registry knows).")
@click.option("--index", "index_path", required=True, type=click.Path(),
              help="A gallery index written by `mpanet-tf index build` with the same --model: a .mpidx folder, "
                   "milvus:PATH.db (Milvus Lite) or milvus://HOST:PORT/COLLECTION (token in MPANET_MILVUS_TOKEN). "
                   "The service holds it and appends the images POSTed to /v1/gallery.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any non-loopback address needs --token-file (or --insecure-no-auth).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the bearer token (16+ characters). Every endpoint but /healthz and the page's "
                   "own files then needs `Authorization: Bearer <token>`.")
@click.option("--insecure-no-auth", is_flag=True,
              help="Allow a non-loopback --host without a token (a trusted network only).")
@click.option("--uploads", type=click.Path(file_okay=False), default=None,
              help="Folder the service keeps added gallery images in, under content-addressed names "
                   "[default: INDEX.uploads beside the index].")
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Most images per embedder call: concurrent embed/search/add requests are batched together.")
@click.option("--batch-timeout-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Longest wait for more requests to join a batch after its first one.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True,
              help="Largest request body; larger uploads get 413.")
def serve_command(model_path, index_path, host, port, token_file, insecure_no_auth, uploads, max_batch,
                  batch_timeout_ms, max_upload_mb):
    """Serve person search over HTTP: POST an image, get the gallery's ranked matches.

    Endpoints: POST /v1/embed, POST /v1/search, POST /v1/gallery, GET /v1/gallery/ID/thumbnail,
    GET /healthz, GET /metrics, and the web page at /. SIGTERM or Ctrl-C answers the requests in
    flight, then exits 0. Needs the serve extra: pip install 'mpanet-tf[serve]'.
    """
    try:
        from mpanet_tf.serve.app import serve  # deferred: starlette/uvicorn are the optional serve extra
    except ImportError as error:
        raise ConfigError(f"`mpanet-tf serve` needs {error.name}, which is not installed; "
                          "pip install 'mpanet-tf[serve]'") from None
    serve(model_path, index_path, host=host, port=port, uploads=uploads, token_file=token_file,
          insecure_no_auth=insecure_no_auth, max_batch=max_batch, batch_timeout_ms=batch_timeout_ms,
          max_upload_mb=max_upload_mb, log=click.echo)


def register(group) -> None:
    group.add_command(serve_command)
