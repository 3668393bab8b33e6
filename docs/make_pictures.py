"""Make the README's four pictures (docs/images/{ranks,patterns,tsne,curves}.png) from a run folder.

Usage::

    python docs/make_pictures.py --run RUN --data-root SYSU_ROOT [--out docs/images]

``RUN`` is a run folder written by ``mpanet-tf train`` (model.keras and history.json) and
``SYSU_ROOT`` the SYSU-MM01-layout tree it was trained on. The committed pictures were made from a
short CPU run on a synthetic tree (random backbone, so they show the tool, not MPANet's accuracy)::

    mpanet-tf synth --layout sysu --out /tmp/vizwork/sysu --ids 24 --images-per-camera 4 --size 96x48
    mpanet-tf train --dataset sysu --data-root /tmp/vizwork/sysu --output /tmp/vizwork/run \\
        --epochs 6 --steps-per-epoch 4 --eval-every 1 --image-size 96x48 --batch-ids 4 \\
        --images-per-id 4 --backbone-weights none
    python docs/make_pictures.py --run /tmp/vizwork/run --data-root /tmp/vizwork/sysu

Each picture is drawn by the same library call as ``mpanet-tf visualize``; a picture over 100 KB is
re-saved with a 256-colour palette, so each stays well under the 150 KB limit.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

NAMES = ("ranks", "patterns", "tsne", "curves")
LIMIT_BYTES = 150 * 1024
#: Pictures above this size are re-saved with a palette, leaving room below the limit.
SHRINK_ABOVE = 100 * 1024


def shrink(path: Path, limit: int = SHRINK_ABOVE) -> int:
    """Re-save ``path`` with an adaptive 256-colour palette when it is over ``limit`` bytes; new size."""
    size = path.stat().st_size
    if size <= limit:
        return size
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
    return path.stat().st_size


def make_pictures(run, data_root, out="docs/images", dataset: str = "sysu") -> dict[str, int]:
    """Write the four pictures of ``run`` into ``out``; returns {name: bytes}."""
    from mpanet_tf.data.registry import get_dataset
    from mpanet_tf.data.sysu import SYSUDataset
    from mpanet_tf.model import load_model
    from mpanet_tf.viz.curves import visualize_curves
    from mpanet_tf.viz.patterns import visualize_patterns
    from mpanet_tf.viz.ranks import visualize_ranks
    from mpanet_tf.viz.tsne import visualize_tsne

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(run)   # loaded once, shared by the three model pictures
    spec = get_dataset(dataset)
    visualize_ranks(model, out / "ranks.png", dataset=spec, data_root=data_root, queries=3, top_k=6)
    if dataset == "sysu":
        image = SYSUDataset(data_root).gallery_records("all")[0].path
    else:
        from mpanet_tf.data.regdb import RegDBDataset

        image = RegDBDataset(data_root).test_visible()[0].path
    visualize_patterns(model, image, out / "patterns.png")
    visualize_tsne(model, spec, data_root, out / "tsne.png", ids=8, per_modality=8)
    visualize_curves(run, out / "curves.png")
    return {name: shrink(out / f"{name}.png") for name in NAMES}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder written by `mpanet-tf train`")
    parser.add_argument("--data-root", required=True, help="the dataset tree the run was trained on")
    parser.add_argument("--dataset", default="sysu", choices=("sysu", "regdb"), help="layout of --data-root")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "images"),
                        help="output folder [default: docs/images next to this script]")
    args = parser.parse_args(argv)
    sizes = make_pictures(args.run, args.data_root, args.out, args.dataset)
    for name, size in sizes.items():
        print(f"{Path(args.out) / (name + '.png')}: {size / 1024:.0f} KB")
    too_big = [name for name, size in sizes.items() if size > LIMIT_BYTES]
    if too_big:
        print(f"over {LIMIT_BYTES // 1024} KB: {', '.join(too_big)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
