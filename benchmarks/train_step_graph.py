"""Op-type histogram of MPANet's traced train step: does a refactor change what the step computes?

Traces ``model.train_step`` (forward, every loss term, gradients, Adam, the mean-classifier EMA) of
the 64x32 test model as a ``tf.function`` and prints the total op count and the count per op type.
Two trees whose histograms are equal trace the same work, which no timing on a loaded machine can
show. Compare the code before a change with ``git archive <rev> | tar -x -C /tmp/before`` and
``PYTHONPATH=/tmp/before python benchmarks/train_step_graph.py``.

    python benchmarks/train_step_graph.py > after.txt
"""

from __future__ import annotations

import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mpanet_tf  # noqa: E402,F401  (before TensorFlow: sets its oneDNN default)


def main() -> None:
    import keras
    import tensorflow as tf

    from mpanet_tf import MPANetConfig, build_model

    config = MPANetConfig()
    config.model.image_height, config.model.image_width = 64, 32
    config.data.batch_ids, config.data.images_per_id = 2, 4
    model = build_model(config, 3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    spec = (tf.TensorSpec((8, 64, 32, 3), tf.float32), tf.TensorSpec((8,), tf.int32), tf.TensorSpec((8,), tf.bool))
    step = tf.function(lambda images, labels, infrared: model.train_step((images, labels, infrared)),
                       autograph=False)
    ops = collections.Counter(op.type for op in step.get_concrete_function(*spec).graph.get_operations())
    print(f"total ops {sum(ops.values())}, types {len(ops)}")
    for name, count in sorted(ops.items()):
        print(f"{name} {count}")


if __name__ == "__main__":
    main()
