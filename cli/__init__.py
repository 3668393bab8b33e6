"""The thin click layer of mpanet-tf (installed as ``mpanet_tf.cli``)."""
