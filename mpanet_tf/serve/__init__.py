"""``mpanet-tf serve``: a person-search service holding one embedder and one gallery index.

- :mod:`~mpanet_tf.serve.app`       the Starlette application, its endpoints, and ``serve`` (uvicorn)
- :mod:`~mpanet_tf.serve.service`   embed / search / add without HTTP, through the batcher
- :mod:`~mpanet_tf.serve.batching`  dynamic batching of concurrent requests into one embedder call
- the gallery: any store of :func:`mpanet_tf.index.store.open_store` (a `.mpidx` folder or Milvus)
- :mod:`~mpanet_tf.serve.security`  bind rule, bearer token, upload size and content checks
- :mod:`~mpanet_tf.serve.metrics`   ``/metrics`` in the Prometheus text format
- ``static/``                       the web page (no CDN; works offline)

Starlette and uvicorn are the ``serve`` extra: ``pip install 'mpanet-tf[serve]'``.
"""
