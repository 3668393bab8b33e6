"""int8 (ONNX Runtime QDQ) vs float32 embedding runtimes: throughput, agreement, retrieval.

Two parts, measured in one run:

1. **Speed.** The full-size SYSU model (384x128 input, 14336-d embedding; random weights with
   non-trivial BatchNorm statistics: weights do not change the cost) is exported with
   :func:`mpanet_tf.export.export_model` to every exportable runtime of the registry
   (:mod:`mpanet_tf.runtimes`: SavedModel, ONNX, int8 calibrated on ``--calibration-images``
   images of ``--data-root``), then each is timed on the same images at batch 1 and 32:
   the SavedModel through ``serving_default`` (uint8, identity-size resize, as TF Serving runs
   it), the others through their embedder on float32 arrays. Rounds interleave the runtimes
   (``--rounds`` x ``--repeats`` calls each), the best round is reported, so a load change hits
   every runtime alike.
2. **Accuracy.** A run folder trained on the synthetic SYSU tree (``--run``, ``--data-root``;
   e.g. ``mpanet-tf synth`` + ``mpanet-tf train --backbone-weights none`` for a few epochs) is
   exported to ONNX and int8 (calibrated on the tree's images), and ``mpanet-tf eval --model``
   runs the SYSU all-search single-shot protocol (10 trials) on the run folder, the ONNX file
   and the int8 file: R1/mAP/mINP of each; and the cosine similarity between the int8 and
   float32 ONNX embeddings of ``--cosine-images`` images of the tree (default 500; mean, 1st
   percentile, worst).

Usage::

    mpanet-tf synth --out /tmp/b/sysu --ids 24 --size 96x48
    mpanet-tf train --dataset sysu --data-root /tmp/b/sysu --output /tmp/b/run --epochs 10 \\
        --image-size 96x48 --batch-ids 4 --images-per-id 4 --lr 1e-3 --milestones 1000 \\
        --backbone-weights none --eval-every 0 --no-final-eval
    python benchmarks/int8_speed.py --run /tmp/b/run --data-root /tmp/b/sysu --output int8.md
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _shell(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True).stdout.strip()


def randomize_batch_norms(model, seed=0):
    """gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2), moving mean ~ N(0, 0.3), moving var ~ U(0.5, 2)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in [*model.backbone.layers, model.bn_neck]:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(0.5, 1.5, channels), "beta": rng.normal(0, 0.2, channels),
                      "moving_mean": rng.normal(0, 0.3, channels),
                      "moving_variance": rng.uniform(0.5, 2.0, channels)}
            for name, value in values.items():
                variable = getattr(layer, name, None)
                if variable is not None:
                    variable.assign(value.astype(variable.dtype))


def array_runner(runtime, artifact):
    """runtime -> call(uint8 images (B, H, W, 3) at the model size) -> (B, D)."""
    if runtime.name == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(artifact)).signatures["serving_default"]
        return lambda images: serve(images=tf.constant(images))["embeddings"].numpy()
    embedder = runtime.load(artifact)
    return lambda images: embedder(images.astype(np.float32))


def speed(args, data_root, scratch):
    from mpanet_tf.config import MPANetConfig
    from mpanet_tf.export import export_model
    from mpanet_tf.model import build_model
    from mpanet_tf.runtimes import format_names, get_runtime, quantized_names

    config = MPANetConfig()
    height, width = (int(s) for s in args.size.split("x"))
    config.model.image_height, config.model.image_width = height, width
    config.model.backbone_weights = "none"
    model = build_model(config, num_classes=395)
    randomize_batch_norms(model)
    base = Path(scratch) / "speed"
    names = [*format_names(), *quantized_names()]
    started = time.perf_counter()
    # random weights: their int8/float32 agreement means nothing, so the guard only measures
    written = export_model(model, base, formats=names, calibration=data_root,
                           calibration_images=args.calibration_images, min_cosine=0.0)
    export_seconds = time.perf_counter() - started
    del model
    runners = {name: array_runner(get_runtime(name), path) for name, path in written.items()}
    sizes = {name: sum(f.stat().st_size for f in (p if p.is_dir() else p.parent).rglob("*") if f.is_file()) / 2**20
             for name, p in written.items()}
    rng = np.random.default_rng(0)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
        for run in runners.values():
            run(images)  # warm up
        best = {name: 0.0 for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                start = time.perf_counter()
                for _ in range(args.repeats):
                    run(images)
                best[name] = max(best[name], batch * args.repeats / (time.perf_counter() - start))
        for name in runners:
            rows.append((name, batch, best[name]))
            print(f"{name:12s} batch {batch:3d}: {best[name]:7.2f} images/s", flush=True)
    return rows, sizes, export_seconds


def accuracy(args, data_root, scratch):
    from click.testing import CliRunner

    from mpanet_tf.cli.main import cli
    from mpanet_tf.export import export_model

    base = Path(scratch) / "accuracy"
    written = export_model(args.run, base, formats=("onnx", "int8"), calibration=data_root,
                           calibration_images=args.calibration_images, min_cosine=args.min_cosine)
    results = {}
    for name, model_path in (("keras (run folder)", args.run), ("onnx", written["onnx"]), ("int8", written["int8"])):
        out = Path(scratch) / f"{len(results)}.json"
        result = CliRunner().invoke(cli, ["eval", "--dataset", "sysu", "--data-root", str(data_root), "--model",
                                          str(model_path), "--output", str(out), "-q"])
        if result.exit_code != 0:
            raise SystemExit(f"eval of {model_path} failed: {result.output}")
        results[name] = json.loads(out.read_text())
    info = json.loads((written["int8"].parent / "mpanet_export.json").read_text())["quantization"]
    held_out = [Path(data_root) / p for p in info["holdout"]]
    return results, agreement(written["onnx"], written["int8"], data_root, args.cosine_images), {
        **{key: info.get(key) for key in ("mean_cosine", "worst_cosine", "min_cosine", "min_cosine_met",
                                          "float32_blocks", "calibration_images", "holdout_images")},
        "remeasured_mean_cosine": float(agreement(written["onnx"], written["int8"], data_root, paths=held_out).mean())}


def agreement(float_path, int8_path, data_root, count=None, paths=None):
    """Cosine similarity between the int8 and the float32 ONNX embeddings of ``paths``, or of
    ``count`` images of ``data_root`` (every image of the tree, train and test, evenly spread over
    the sorted list): (count,) float64. Independent of the export's own measurement: each file is
    loaded by :func:`mpanet_tf.runtimes.embedder.load_embedder`, as ``search`` and ``eval`` load it."""
    from mpanet_tf.data.image_files import find_images
    from mpanet_tf.data.images import load_image
    from mpanet_tf.runtimes.embedder import load_embedder

    float32, int8 = load_embedder(float_path), load_embedder(int8_path)
    if paths is None:
        everything = find_images(data_root)
        paths = [everything[i] for i in np.unique(np.linspace(0, len(everything) - 1, count).round().astype(int))]
    cosines = []
    for start in range(0, len(paths), 32):
        batch = np.stack([load_image(p, float32.image_size) for p in paths[start:start + 32]]).astype(np.float32)
        a, b = np.asarray(float32(batch), np.float64), np.asarray(int8(batch), np.float64)
        cosines.append(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
    return np.concatenate(cosines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="trained run folder (accuracy part)")
    parser.add_argument("--data-root", required=True, help="synthetic SYSU tree: calibration and evaluation")
    parser.add_argument("--size", default="384x128", help="input HxW of the speed part (default 384x128)")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="calls per runtime per round (default 3)")
    parser.add_argument("--calibration-images", type=int, default=None,
                        help="int8 calibration images (default: the exporter's default)")
    parser.add_argument("--cosine-images", type=int, default=500,
                        help="images of --data-root whose int8 and float32 embeddings are compared (default 500)")
    parser.add_argument("--min-cosine", type=float, default=None,
                        help="the accuracy export's --min-cosine (default: the exporter's, 0.99)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--output", default=None, help="also write the Markdown report here")
    args = parser.parse_args(argv)

    import onnxruntime
    import tensorflow as tf

    load_at_start = _shell("cat /proc/loadavg")
    with tempfile.TemporaryDirectory(prefix="mpanet-int8-bench-") as scratch:
        rows, sizes, export_seconds = ([], {}, 0.0) if args.skip_speed else speed(args, args.data_root, scratch)
        results, cosine, guard = accuracy(args, args.data_root, scratch)

    from machine import cpu_model, int8_dot_product

    cpu = cpu_model()
    int8_flags = " ".join(sorted(set(_shell("grep -o -w -E 'avx512[a-z_0-9]*|avx_vnni|amx[a-z_0-9]*|avx2' "
                                            "/proc/cpuinfo").split())))
    lines = [
        "# int8 embedding model vs float32 runtimes (CPU)",
        "",
        f"Command: `python benchmarks/int8_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Versions: TensorFlow {tf.__version__}, ONNX Runtime {onnxruntime.__version__}, Python "
        f"{platform.python_version()}. CPU: {cpu}, {_shell('nproc')} cores; SIMD flags: {int8_flags or 'none'}; "
        f"single-instruction int8 dot product: {int8_dot_product()}.",
        f"Load average at the start: {load_at_start}; at the end: {_shell('cat /proc/loadavg')}.",
        "",
    ]
    if rows:
        onnx32 = {batch: rate for name, batch, rate in rows if name == "onnx"}
        lines += [
            f"## Speed: full-size model {args.size}, random weights (export of all runtimes: {export_seconds:.0f} s)",
            "",
            "| runtime | batch | images/s | vs float32 ONNX | artifact MiB |",
            "|---|---:|---:|---:|---:|",
            *[f"| {name} | {batch} | {rate:.2f} | {rate / onnx32[batch]:.2f}x | {sizes[name]:.0f} |"
              for name, batch, rate in rows],
            "",
        ]
    lines += [
        f"## Accuracy: {args.run} on {args.data_root} (SYSU all-search single-shot, 10 trials)",
        "",
        "| model | rank-1 | mAP | mINP |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {r['rank1']:.2f} | {r['mAP']:.2f} | {r['mINP']:.2f} |" for name, r in results.items()],
        "",
        f"Cosine similarity int8 vs float32 ONNX embeddings over {cosine.size} images of the tree (train and test): "
        f"mean {cosine.mean():.5f}, 1st percentile {np.percentile(cosine, 1):.5f}, worst {cosine.min():.5f}.",
        "",
        f"The export's agreement check (`--min-cosine {guard['min_cosine']}`, {guard['calibration_images']} "
        f"calibration + {guard['holdout_images']} held-out images): reported mean cosine {guard['mean_cosine']:.6f} "
        f"(worst {guard['worst_cosine']:.6f}, target met: {guard['min_cosine_met']}; float32 blocks: "
        f"{', '.join(guard['float32_blocks']) or 'none'}); re-measured on the same held-out images by "
        f"load_embedder: {guard['remeasured_mean_cosine']:.6f}.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        Path(args.output).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
