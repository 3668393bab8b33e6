"""Gallery index: embed a gallery once, search it many times (``mpanet-tf index``, ``search --index``).

- :mod:`~mpanet_tf.index.format`       the ``gallery.mpidx/`` folder and its validation (:class:`GalleryIndex`)
- :mod:`~mpanet_tf.index.builder`      ``build_index`` / ``add_to_index``: batched, resumable
- :mod:`~mpanet_tf.index.lock`         the writer lock (one process writes an index at a time)
- :mod:`~mpanet_tf.index.sources`      a folder of images or a dataset split -> entries
- :mod:`~mpanet_tf.index.fingerprint`  which model artifact made the index
- :mod:`~mpanet_tf.index.exact`        exact chunked search over the memory-mapped rows
- :mod:`~mpanet_tf.index.ann`          optional FAISS IVF-PQ search (``pip install 'mpanet-tf[ann]'``)
- :mod:`~mpanet_tf.index.describe`     ``index info``
"""

from mpanet_tf.index.builder import add_to_index, build_index, index_from_features
from mpanet_tf.index.format import GalleryIndex, GalleryIndexError

__all__ = ["GalleryIndex", "GalleryIndexError", "add_to_index", "build_index", "index_from_features"]
