"""``mpanet-tf export`` (SavedModel for TF Serving, ONNX) and ``mpanet-tf search`` (rank a folder)."""

from __future__ import annotations

import click

from mpanet_tf import runtimes
from mpanet_tf.errors import ExportError, printable
from mpanet_tf.io.output_checks import check_output_folder
from mpanet_tf.runtimes import format_names, get_runtime
from mpanet_tf.search import search, search_index
from mpanet_tf.viz.common import check_output
from mpanet_tf.viz.ranked_list import draw_ranked_list


class RuntimeChoice(click.Choice):
    """A click choice among registered runtimes (:mod:`mpanet_tf.runtimes`), read when the
    option is parsed, so a runtime registered after this module was imported is accepted too."""

    def __init__(self, names, extra=()):
        self._names, self._extra = names, tuple(extra)
        super().__init__(())

    @property
    def choices(self):
        return (*self._names(), *self._extra)

    @choices.setter
    def choices(self, _):
        pass


def _format_help() -> str:
    return "; ".join([*(f"{name}: {get_runtime(name).help}" for name in format_names()),
                      "all: every one of them"]) + "."


def _registered(kind):
    def names():
        return getattr(runtimes, kind)()

    return names


@click.command("export")
@click.option("--model", "model_path", required=True, type=click.Path(),
              help="Run folder written by `mpanet-tf train` (its model.keras or newest checkpoint) "
                   "or a .keras file.")
@click.option("--format", "fmt", type=RuntimeChoice(_registered("format_names"), extra=("all",)),
              default="savedmodel", show_default=True, help=_format_help())
@click.option("--output", required=True, type=click.Path(),
              help="The model's base folder, e.g. saved_models/mpanet (TF Serving's model_base_path).")
@click.option("--version", "version", type=click.IntRange(min=1), default=1, show_default=True,
              help="Version number: the SavedModel goes to OUTPUT/<version>/ (TF Serving serves the "
                   "highest one), the ONNX file to OUTPUT/onnx/<version>/.")
@click.option("--opset", type=click.IntRange(min=13), default=None,
              help="ONNX opset [default: 17].")
@click.option("--quantize", type=RuntimeChoice(_registered("quantized_names")), default=None,
              help="Also write a quantised model beside the --format artifacts: int8 = "
                   "OUTPUT/int8/<version>/model.onnx, ONNX Runtime QDQ int8 with per-channel weights, "
                   "calibrated on --calibration images.")
@click.option("--calibration", type=click.Path(), default=None,
              help="With --quantize: a folder of images of the target data (searched recursively; a "
                   "dataset root works) that calibrates the activation ranges.")
@click.option("--calibration-images", type=click.IntRange(min=1), default=None,
              help="With --quantize: how many --calibration images, evenly spread over the sorted "
                   "list [default: 64; memory does not grow with N, time does: ~0.15 s per image at 384x128 on 2 cores].")
@click.option("--force", is_flag=True,
              help="Replace an existing OUTPUT/<version>/ or OUTPUT/onnx/<version>/ (refused otherwise).")
def export_command(model_path, fmt, output, version, opset, quantize, calibration, calibration_images, force):
    """Export the test-time embedding for serving.

    Both artifacts return `embeddings`, float32 (N, 14336): the BN-neck feature the evaluation
    uses, not L2-normalised. SavedModel inputs: `images` uint8 (N, H, W, 3) of any size
    (serving_default) or `image_bytes` string (N,) JPEG/PNG/BMP files (serve_encoded); both are
    resized exactly as in evaluation. ONNX input: `images` float32 (N, H, W, 3) in [0, 255]
    already resized to the model's input size. A failed export leaves nothing behind.
    """
    from mpanet_tf.export import export_model  # deferred: TensorFlow; --help stays fast

    check_output_folder(output, "--output")
    if (calibration is not None or calibration_images is not None) and quantize is None:
        raise ExportError("--calibration/--calibration-images only apply with --quantize int8; add it or "
                          "drop them")
    formats = (fmt,) if quantize is None else (fmt, quantize)
    written = export_model(model_path, output, formats=formats, version=version, force=force, opset=opset,
                           calibration=calibration, calibration_images=calibration_images)
    for kind, path in written.items():
        click.echo(f"{kind}: {path}")


@click.command("search")
@click.option("--model", "model_path", required=True, type=click.Path(),
              help="Exported model (saved_models/NAME, its highest version, or saved_models/NAME/<v>), "
                   "an .onnx file (float or int8), a run folder or a .keras file.")
@click.option("--query", required=True, type=click.Path(),
              help="The query image (visible or infrared).")
@click.option("--gallery", default=None, type=click.Path(),
              help="Folder searched recursively for .jpg/.jpeg/.png/.bmp images (either modality), embedded now.")
@click.option("--index", "index_path", default=None, type=click.Path(),
              help="Instead of --gallery: a gallery index written by `mpanet-tf index build` (only the query "
                   "is embedded; the index must come from the same --model).")
@click.option("--ann", is_flag=True, help="With --index: approximate FAISS IVF-PQ search (pip install "
                                          "'mpanet-tf[ann]'); default exact.")
@click.option("--nprobe", type=click.IntRange(min=1), default=None,
              help="With --ann: inverted-file cells visited per query [default: the index's, about "
                   "1/8 of its cells, at most 256]; more is slower and nearer the exact ranking "
                   "(benchmarks/RESULTS.md: recall@10 at 10^6 rows).")
@click.option("--top-k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many matches to print and draw.")
@click.option("--output", type=click.Path(), default=None,
              help="Also write the ranked-list picture (query + top-k thumbnails with distances), "
                   "e.g. ranked.png.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Gallery images per forward pass.")
@click.option("--skip-bad-images", is_flag=True,
              help="Leave undecodable gallery files out and report how many (default: stop at the first).")
def search_command(model_path, query, gallery, index_path, ann, nprobe, top_k, output, batch_size,
                   skip_bad_images):
    """Rank every image under GALLERY against the QUERY image.

    Distance: Euclidean distance between L2-normalised embeddings, in [0, 2]; smaller is more
    similar (the SYSU-MM01 evaluation's ranking). Prints rank, distance and path of the top-k.
    """
    if (gallery is None) == (index_path is None) or (ann and index_path is None):
        raise click.UsageError("pass exactly one of --gallery FOLDER and --index INDEX (--ann needs --index)")
    if nprobe is not None and not ann:
        raise click.UsageError("--nprobe only applies with --ann")
    if output:   # checked before the gallery is embedded
        check_output(output)
    if index_path is not None:
        result = search_index(model_path, query, index_path, top_k=top_k, ann=ann, nprobe=nprobe)
    else:
        result = search(model_path, query, gallery, batch_size=batch_size, skip_bad_images=skip_bad_images)
    if result.skipped:
        count = len(result.skipped)
        click.echo(printable(f"Warning: skipped {count} undecodable gallery file{'s' if count > 1 else ''}, the "
                             f"first {result.skipped[0]}"), err=True)
    click.echo(printable(f"query: {result.query}  ({result.gallery_size} gallery images)"))
    click.echo(f"{'rank':>4}  {'distance':>8}  path")
    top = result.top(top_k)
    for rank, distance, path in top:
        click.echo(printable(f"{rank:>4}  {distance:8.4f}  {path}"))
    if output:
        picture = draw_ranked_list(result.query, [p for _, _, p in top], [d for _, d, _ in top], output,
                                   title=f"query {result.query.name}: top {len(top)} of {result.gallery_size}")
        click.echo(f"picture: {picture}")


def register(group) -> None:
    group.add_command(export_command)
    group.add_command(search_command)
