"""Importing TensorFlow without its native start-up chatter.

TensorFlow's C++ runtime writes several lines to stderr before absl logging is initialised
(oneDNN notices, "Could not find cuda drivers", a failed ``cuInit`` on CPU-only machines);
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them. The CLI promises one line on stderr per error, so it
imports TensorFlow and probes the devices once here with file descriptor 2 pointed at /dev/null.
Set ``MPANET_TF_VERBOSE_TF=1`` to see those lines.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration (Python's sys.stderr is unaffected
    once restored)."""
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded interpreters)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow_quietly():
    """Import TensorFlow and Keras and initialise the device list without native log noise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("MPANET_TF_VERBOSE_TF"):
        import tensorflow as tf
        return tf
    with native_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
