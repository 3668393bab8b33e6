"""Writing files and folders safely: atomic file writes (:mod:`~mpanet_tf.io.atomic`), folder locks
(:mod:`~mpanet_tf.io.locks`), staging folders (:mod:`~mpanet_tf.io.staging`) and the up-front
checks of a command's output location (:mod:`~mpanet_tf.io.output_checks`).

The lowest layer above :mod:`mpanet_tf.errors`: nothing here knows about models, data or runs.
"""
