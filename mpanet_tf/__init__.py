"""mpanet-tf: MPANet (CVPR 2021) for visible-infrared person re-identification in Keras 3.

Public API::

    from mpanet_tf import MPANetConfig, build_model, load_model

TensorFlow is imported lazily, so ``import mpanet_tf`` and the CLI's ``--help`` stay fast.

Importing the package before TensorFlow turns on TensorFlow's oneDNN CPU kernels unless
``TF_ENABLE_ONEDNN_OPTS`` is already set: TensorFlow enables them by default only on CPUs with
AVX-512 VNNI/BF16 or AMX, and on AVX2 CPUs (AMD Zen 2/3, older Intel) the train step's
convolutions take ~1.3x more CPU time without them (benchmarks/RESULTS.md). TensorFlow reads the
variable once, when it loads; ``TF_ENABLE_ONEDNN_OPTS=0`` keeps its Eigen kernels.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mpanet_tf.config import MPANetConfig  # noqa: E402

__version__ = "0.1.0"
__all__ = ["MPANetConfig", "build_model", "load_model", "__version__"]


def build_model(config, num_classes):
    """Build the MPANet Keras model; see :func:`mpanet_tf.model.build_model`."""
    from mpanet_tf.model import build_model as _build  # deferred: TensorFlow, so `import mpanet_tf` stays light

    return _build(config, num_classes)


def load_model(path):
    """Load a model from a run folder or a ``.keras`` file; see :func:`mpanet_tf.model.load_model`."""
    from mpanet_tf.model import load_model as _load  # deferred: TensorFlow, so `import mpanet_tf` stays light

    return _load(path)
