"""float16 gallery storage (``index build --dtype float16``): its effect on R1/mAP/mINP of a
trained model under a dataset's own evaluation protocol.

The gallery index stores L2-normalised rows; with ``--dtype float16`` each is rounded to float16
(the query is embedded at search time and stays float32). This script takes a feature file of a
trained model (``mpanet-tf eval ... --save-features F``), writes its gallery rows into a float32
and a float16 index with :func:`mpanet_tf.index.index_from_features` (the storage code of
``index build``), reads the stored rows back, and runs ``mpanet-tf eval --features`` on the
original features and on each stored version (same queries, same protocol, same trials):

    mpanet-tf eval --dataset sysu --data-root /tmp/qs/data --model /tmp/qs/run --save-features /tmp/f.npz
    python benchmarks/float16_storage.py --features /tmp/f.npz --dataset sysu --data-root /tmp/qs/data

Also prints the largest difference between a stored float16 row and its float32 row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def stored_rows(features: np.ndarray, dtype: str, folder: Path) -> np.ndarray:
    """``features`` (G, D) after a round trip through a ``dtype`` gallery index: (G, D) float32."""
    from mpanet_tf.index import index_from_features

    entries = [{"path": f"gallery/{i:07d}.jpg"} for i in range(len(features))]
    index = index_from_features(folder / f"{dtype}.mpidx", features, entries, "sha256:features", dtype=dtype)
    return np.asarray(index.embeddings(), dtype=np.float32)


def evaluate(features_file: Path, dataset: str, data_root: str, extra: list[str], scratch: Path) -> dict:
    from click.testing import CliRunner

    from mpanet_tf.cli.main import cli

    output = scratch / f"{features_file.stem}.json"
    result = CliRunner().invoke(cli, ["eval", "--dataset", dataset, "--data-root", data_root, "--features",
                                      str(features_file), "--output", str(output), "-q", *extra])
    if result.exit_code != 0:
        raise SystemExit(f"eval --features {features_file} failed: {result.output}")
    return json.loads(output.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, type=Path, help="eval --save-features file of a trained model")
    parser.add_argument("--dataset", default="sysu")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--eval-option", action="append", default=[],
                        help="extra eval option, repeatable (e.g. --eval-option=--mode --eval-option=indoor)")
    args = parser.parse_args(argv)

    from mpanet_tf.eval.features import load_features, save_features

    original = load_features(args.features)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="mpanet-fp16-") as scratch:
        scratch = Path(scratch)
        results = {"float32 features (eval --features)": evaluate(args.features, args.dataset, args.data_root,
                                                                   args.eval_option, scratch)}
        for dtype in ("float32", "float16"):
            rows[dtype] = stored_rows(original.gallery_features, dtype, scratch)
            path = scratch / f"gallery_{dtype}.npz"
            save_features(path, dataclasses.replace(original, gallery_features=rows[dtype]))
            results[f"gallery stored as {dtype} (index)"] = evaluate(path, args.dataset, args.data_root,
                                                                   args.eval_option, scratch)
    difference = np.abs(rows["float16"] - rows["float32"]).max()
    print(f"features: {args.features} ({len(original.query_features)} queries, "
          f"{len(original.gallery_features)} gallery rows, {original.gallery_features.shape[1]}-d)")
    print("| gallery rows | rank-1 | mAP | mINP |")
    print("|---|---:|---:|---:|")
    for name, result in results.items():
        print(f"| {name} | {result['rank1']:.4f} | {result['mAP']:.4f} | {result['mINP']:.4f} |")
    print(f"largest |float16 row - float32 row| of the unit rows: {difference:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
