"""``mpanet-tf index info``: what a gallery index holds, in a few lines."""

from __future__ import annotations

from mpanet_tf.index.format import GalleryIndex
from mpanet_tf.index.milvus_store import MilvusStore, is_milvus_location


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


def _source(source: dict) -> str:
    if source.get("kind") == "folder":
        return f"folder {source['path']}"
    if source.get("kind") != "dataset":
        return str(source.get("kind"))
    trial = f" trial {source['trial']}" if "trial" in source else ""
    options = "".join(f" {key}={value}" for key, value in source.get("options", {}).items())
    return f"{source.get('name')} {source.get('split')}{trial}{options} at {source.get('root')}"


def _common(meta: dict) -> list[str]:
    """The lines both stores share: sources, skipped images, an unfinished build."""
    lines = [f"source: {_source(s)}" for s in meta["sources"]]
    if meta["skipped"]:
        lines.append(f"skipped: {len(meta['skipped'])} undecodable images (first: {meta['skipped'][0]})")
    if meta.get("pending"):
        pending = meta["pending"]
        lines.append(f"UNFINISHED: `index {pending.get('command')}` stopped; re-run it to embed the rest "
                     f"({pending.get('images')} images were pending when it started)")
    return lines


def describe_milvus(location: str) -> list[str]:
    """``index info`` of a Milvus gallery (:mod:`mpanet_tf.index.milvus_store`)."""
    with MilvusStore.open(location, allow_pending=True) as store:
        meta, embedding = store.meta, store.meta["embedding"]
        size, index = embedding.get("image_size"), meta["index"]
        params = ", ".join(f"{k}={v}" for k, v in index["params"].items())
        lines = [
            f"index: {location}  (Milvus collection {store.collection}, format {meta['format_version']})",
            f"images: {store.count()}",
            f"embeddings: {store.dim}-d {store.dtype}, L2-normalised, Euclidean distance",
            f"model: {store.fingerprint}  ({meta['model'].get('kind')} {meta['model'].get('source')})",
            f"image size: {f'{size[0]}x{size[1]}' if size else 'resized by the model'}; "
            f"mpanet-tf {embedding.get('mpanet_tf_version')}",
            f"vector index: {index['type']}{f' ({params})' if params else ''}; "
            f"{'exact search and --ann' if index['type'] != 'HNSW' else '--ann only'}",
            f"created: {meta['created']}  updated: {meta['updated']}",
        ]
        return lines + _common(meta)


def describe_index(path) -> list[str]:
    """The lines of ``index info``: count, dim, dtype, model fingerprint, size on disk, dates, sources.

    ``path``: an ``.mpidx`` folder or a ``milvus:`` location (:func:`describe_milvus`). An
    unfinished build is described too (it says so); a corrupt or foreign index raises
    :class:`~mpanet_tf.index.format.GalleryIndexError`.
    """
    if is_milvus_location(path):
        return describe_milvus(path)
    index = GalleryIndex.open(path, allow_pending=True)
    meta, embedding = index.meta, index.meta["embedding"]
    labelled = sum(1 for e in index.entries if e.get("person_id") is not None)
    size = embedding.get("image_size")
    lines = [
        f"index: {index.path}  (format {meta['format_version']})",
        f"images: {index.count}  ({labelled} with identity/camera/modality)",
        f"embeddings: {index.dim}-d {index.dtype}, L2-normalised, Euclidean distance",
        f"model: {index.fingerprint}  ({meta['model'].get('kind')} {meta['model'].get('source')})",
        f"image size: {f'{size[0]}x{size[1]}' if size else 'resized by the model'}; "
        f"mpanet-tf {embedding.get('mpanet_tf_version')}",
        f"size on disk: {_size(index.size_on_disk())}",
        f"created: {meta['created']}  updated: {meta['updated']}",
    ]
    return lines + _common(meta)
