"""mpanet-tf: MPANet (CVPR 2021) for visible-infrared person re-identification in Keras 3.

Public API::

    from mpanet_tf import MPANetConfig, build_model, load_model

TensorFlow is imported lazily, so ``import mpanet_tf`` and the CLI's ``--help`` stay fast.
"""

from mpanet_tf.config import MPANetConfig

__version__ = "0.1.0"
__all__ = ["MPANetConfig", "build_model", "load_model", "__version__"]


def build_model(config=None, num_classes=395):
    """Build the MPANet Keras model; see :func:`mpanet_tf.model.build_model`."""
    from mpanet_tf.model import build_model as _build

    return _build(config, num_classes)


def load_model(path):
    """Load a model from a run folder or a ``.keras`` file; see :func:`mpanet_tf.model.load_model`."""
    from mpanet_tf.model import load_model as _load

    return _load(path)
