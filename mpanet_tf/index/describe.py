"""``mpanet-tf index info``: what a gallery index holds, in a few lines."""

from __future__ import annotations

from mpanet_tf.index.format import GalleryIndex


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


def _source(source: dict) -> str:
    if source.get("kind") == "folder":
        return f"folder {source['path']}"
    trial = f" trial {source['trial']}" if "trial" in source else ""
    options = "".join(f" {key}={value}" for key, value in source.get("options", {}).items())
    return f"{source.get('name')} {source.get('split')}{trial}{options} at {source.get('root')}"


def describe_index(path) -> list[str]:
    """The lines of ``index info``: count, dim, dtype, model fingerprint, size on disk, dates, sources.

    An unfinished build is described too (it says so); a corrupt or foreign index raises
    :class:`~mpanet_tf.index.format.GalleryIndexError`.
    """
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
    lines += [f"source: {_source(s)}" for s in meta["sources"]]
    if meta["skipped"]:
        lines.append(f"skipped: {len(meta['skipped'])} undecodable images (first: {meta['skipped'][0]})")
    if meta.get("pending"):
        pending = meta["pending"]
        lines.append(f"UNFINISHED: `index {pending.get('command')}` stopped; re-run it to embed the rest "
                     f"({pending.get('images')} images were pending when it started)")
    return lines
