"""tf2onnx (1.17) conversion of a traced TensorFlow function, with memory bounded to a few copies
of its weights.

``tf2onnx.convert.from_function`` peaks at ~55 times the weights: 5.5 GiB for the 97 MB MPANet
(``benchmarks/RESULTS.md``, issue 26 item 7). Two causes, both avoided here with tf2onnx's own
functions called stage by stage:

- **The optimizer passes** (+3.2 GiB): after each optimizer pass (12 optimizers, repeated until
  none changes the graph: 36 passes for the MPANet) tf2onnx rewrites every node's ``NodeProto``
  attributes (``Node.update_proto``). Under protobuf's upb backend a message's memory lives in an
  arena that only grows until the message is dropped, so each pass leaves one more copy of every
  constant tensor in its node's arena (+97 MB a pass). Here each node gets a fresh ``NodeProto``
  after every pass (:func:`_compact`), which frees the old arena.
- **Freezing** (+1.7 GiB, ~0.9 GiB of it grappler): ``from_function`` freezes through a concrete
  function (``convert_variables_to_constants_v2``, then ``as_graph_def`` and ``import_graph_def``)
  and runs grappler (constant folding, function inlining, dependency pruning) on the frozen
  GraphDef, whose serialisations and C++ copies hold ~10 copies of the weights at once. Here the
  variables become constants in one GraphDef
  (``tf_loader.convert_variables_to_constants_large_model``), and grappler sees the constants of
  :data:`HIDDEN_BYTES` or more (the convolution kernels: 96.0 of the MPANet's 96.8 MB) as
  Placeholders of the same dtype and shape (:func:`hide_large_constants`). In the MPANet each of
  them is only read (``Const -> Identity``, the frozen ``ReadVariableOp``), so grappler has
  nothing to fold there that tf2onnx does not remove itself; the smaller constants (biases, the
  BN neck's 14,336-d vectors, the normalisation) stay visible and are folded as before. The
  kernels' bytes travel beside the graph, not in it, as in tf2onnx's ``large_model`` path
  (``const_node_values``).

The ``ModelProto`` is written one initialiser at a time (:func:`write_model`, the same bytes as
``SerializeToString``).

For the MPANet (the tests' tiny model, ResNet-50 + PAM) the result is the graph
``from_function`` gives: the same operators in the same order, the same initialiser values
(96.55 MB), bit-equal ONNX Runtime embeddings; only generated node names (``Transpose__586``)
differ. (tf2onnx's duplicate-merging pass depends on Python's string hashing, so either way the
graph has 197 or 198 nodes depending on ``PYTHONHASHSEED``.) Peak resident memory of the
conversion: 0.3-0.4 GiB above the RSS before it (was 4.7 GiB).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

#: Constants of at least this many bytes are hidden from grappler (:func:`hide_large_constants`).
HIDDEN_BYTES = 64 * 1024


@dataclass
class FrozenGraph:
    """A traced function with its variables turned into constants.

    Attributes:
        graph_def: the ``GraphDef``; its large constants are stripped of their bytes (dtype and
            shape kept) when ``values`` is not empty.
        values: ``{Const node name: tensor bytes}`` of the stripped constants (tf2onnx's
            ``const_node_values``).
        input_names, output_names: tensor names (``"images:0"``), resources left out.
        tensors_to_rename: ``{tensor name: ONNX name}`` (the input signature's and output dict's
            names).
        doc: the ONNX graph's doc string.
    """

    graph_def: object
    values: dict
    input_names: list
    output_names: list
    tensors_to_rename: dict
    doc: str


def freeze(concrete) -> FrozenGraph:
    """Freeze ``concrete`` (a ``ConcreteFunction``) and run grappler as ``from_function`` does,
    with the large constants hidden from it. Memory: one to two copies of the weights beyond the
    function's variables."""
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import tensor_names_from_structed

    input_names = [t.name for t in concrete.inputs if t.dtype != tf.dtypes.resource]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.dtypes.resource]
    renames = tensor_names_from_structed(concrete, input_names, output_names)
    doc = f"converted from {concrete.name}"
    with tf.device("/cpu:0"):
        graph_def = tf_loader.convert_variables_to_constants_large_model(concrete)
        graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
        graph_def, hidden = hide_large_constants(graph_def)
        with tf.Graph().as_default():  # grappler's meta graph export needs graph mode
            graph_def = tf_loader.tf_optimize(input_names, output_names, graph_def)
        values = restore_constants(graph_def, hidden)
    return FrozenGraph(graph_def, values, input_names, output_names, renames, doc)


def hide_large_constants(graph_def, threshold: int = HIDDEN_BYTES):
    """A copy of ``graph_def`` whose ``Const`` nodes of ``threshold`` bytes or more (without
    inputs) are ``Placeholder`` nodes of the same name, dtype and shape.

    Returns:
        (GraphDef, ``{name: (TensorProto with dtype and shape but no bytes, tensor bytes)}``).
        ``graph_def`` itself is left as it was; drop it to free its memory.
    """
    from tensorflow.core.framework import graph_pb2, tensor_pb2

    hidden = {}
    result = graph_pb2.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        tensor = node.attr["value"].tensor if node.op == "Const" and not node.input else None
        if tensor is not None and len(tensor.tensor_content) >= threshold:
            hidden[node.name] = (tensor_pb2.TensorProto(dtype=tensor.dtype, tensor_shape=tensor.tensor_shape),
                                 tensor.tensor_content)
            placeholder = result.node.add(name=node.name, op="Placeholder", device=node.device)
            placeholder.attr["dtype"].type = tensor.dtype
            placeholder.attr["shape"].shape.CopyFrom(tensor.tensor_shape)
        else:
            result.node.add().CopyFrom(node)
    return result, hidden


def restore_constants(graph_def, hidden: dict) -> dict:
    """Turn the Placeholders of :func:`hide_large_constants` in ``graph_def`` back into ``Const``
    nodes, in place, with their dtype and shape but without their bytes.

    Returns:
        ``{name: tensor bytes}`` for the restored nodes (tf2onnx's ``const_node_values``).
    """
    values = {}
    for node in graph_def.node:
        if node.op == "Placeholder" and node.name in hidden:
            stripped, content = hidden[node.name]
            node.op = "Const"
            node.attr.clear()
            node.attr["dtype"].type = stripped.dtype
            node.attr["value"].tensor.CopyFrom(stripped)
            values[node.name] = content
    return values


def convert(frozen: FrozenGraph, path, opset: int, guarded: bool = False) -> None:
    """Convert ``frozen`` to ONNX (``opset``) and write it to ``path`` (one file).

    ``frozen`` is consumed: its GraphDef and values are released as the conversion goes.
    ``guarded``: run tf2onnx's optimizer passes guarded (a deep copy of the graph before each,
    kept when the pass fails), as ``from_function`` does by default; unguarded is ~40% faster for
    a ResNet-50.
    """
    gc.collect()  # the traced function and its network (reference cycles) are no longer needed
    graph = _optimized(_onnx_graph(frozen, opset), guarded)
    model_proto = graph.make_model(frozen.doc)
    del graph
    gc.collect()
    write_model(model_proto, path)


def write_model(model_proto, path) -> None:
    """Write ``model_proto`` (an ONNX ``ModelProto``) to ``path`` as ``SerializeToString()`` would,
    without its ~2 transient copies of the weights (upb's encoding buffer and the bytes object):
    the initialisers are encoded one at a time. ``model_proto`` is consumed (its graph is cleared);
    it must have no unknown fields (one made in this process, as ``make_model``'s).
    """
    graph = model_proto.graph
    tensors = list(graph.initializer)  # upb keeps them alive, detached, after the deletion
    del graph.initializer[:]
    graph_head, graph_tail = _fields_around(graph, GRAPH_INITIALIZER)
    model_proto.ClearField("graph")
    model_head, model_tail = _fields_around(model_proto, MODEL_GRAPH)
    sizes = [tensor.ByteSize() for tensor in tensors]
    graph_size = len(graph_head) + len(graph_tail) + sum(len(_key(GRAPH_INITIALIZER) + _varint(size)) + size
                                                         for size in sizes)
    with open(os.fspath(path), "wb") as handle:
        handle.write(model_head + _key(MODEL_GRAPH) + _varint(graph_size) + graph_head)
        for tensor, size in zip(tensors, sizes):
            handle.write(_key(GRAPH_INITIALIZER) + _varint(size))
            handle.write(tensor.SerializeToString())
        handle.write(graph_tail + model_tail)


#: Field numbers of ``ModelProto.graph`` and ``GraphProto.initializer`` (onnx.proto).
MODEL_GRAPH, GRAPH_INITIALIZER = 7, 5


def _fields_around(message, number: int) -> tuple[bytes, bytes]:
    """The encoding of ``message``'s fields numbered below ``number`` and of those above. upb
    encodes fields in number order, so ``head + field + tail`` is ``SerializeToString()`` byte for
    byte (tests/export/test_onnx_memory.py); any order would parse the same."""
    head, tail = type(message)(), type(message)()
    head.CopyFrom(message)
    tail.CopyFrom(message)
    for field, _ in message.ListFields():
        (tail if field.number < number else head).ClearField(field.name)
    return head.SerializeToString(), tail.SerializeToString()


def _key(number: int) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _onnx_graph(frozen: FrozenGraph, opset: int):
    """tf2onnx's graph of ``frozen`` (``process_tf_graph``, as ``from_function`` calls it)."""
    import tensorflow as tf
    from tf2onnx.tfonnx import process_tf_graph

    with tf.device("/cpu:0"), tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(frozen.graph_def, name="")
        frozen.graph_def = None
        graph = process_tf_graph(tf_graph, continue_on_error=True, opset=int(opset),
                                 input_names=frozen.input_names, output_names=frozen.output_names,
                                 tensors_to_rename=frozen.tensors_to_rename, const_node_values=frozen.values)
    frozen.values = {}
    return graph


def _optimized(graph, guarded: bool):
    """tf2onnx's default optimizer passes over ``graph``, with :func:`_compact` after each."""
    from tf2onnx import optimizer

    _compact(graph)
    passes = {name: _compacting(factory, collect=guarded) for name, factory in optimizer._get_optimizers().items()}
    return optimizer.optimize_graph(graph, catch_errors=guarded, optimizers=passes)


def _compacting(factory, collect: bool = False):
    """An optimizer factory whose optimizers run ``factory``'s and then :func:`_compact`.

    ``collect``: collect garbage as each optimizer is made. Guarded passes replace the graph by a
    deep copy each time, and the graphs left behind (nodes and graph refer to each other) would
    otherwise wait for the cyclic collector, ~3 GiB of them for the MPANet.
    """

    class Compacting:
        def __init__(self):
            if collect:
                gc.collect()
            self.inner = factory()

        @property
        def graph_been_opt(self):
            return self.inner.graph_been_opt

        def optimize(self, graph, iteration):
            graph = self.inner.optimize(graph, iteration)
            _compact(graph)
            return graph

    return Compacting


def _compact(graph) -> None:
    """Give every node of ``graph`` (and of its body graphs) a fresh ``NodeProto`` holding one copy
    of its attributes, so the old one, with the copies ``Node.update_proto`` left in its upb arena,
    is freed.

    tf2onnx 1.17's ``Node`` keeps its ``NodeProto`` in ``_op`` and its attributes in ``_attr``
    (pyproject pins ``tf2onnx<1.18``); if a version has neither, nothing is done and
    ``tests/export/test_onnx_memory.py`` reports the memory. Nodes with body graphs (loops,
    conditions) keep their proto; their body graphs are compacted.
    """
    for node in graph.get_nodes():
        bodies = node.get_body_graphs()
        if bodies:
            for body in bodies.values():
                _compact(body)
            continue
        if not (hasattr(node, "_op") and hasattr(node, "_attr")):
            return
        old = node._op
        fresh = type(old)()
        del old.attribute[:]
        fresh.CopyFrom(old)  # name, op type, domain, inputs, outputs: no attribute
        fresh.attribute.extend(node.get_onnx_attrs().values())
        written = {attribute.name: attribute for attribute in fresh.attribute}
        attributes = {}
        for name, attribute in node._attr.items():  # same order; the ones ONNX leaves out copied alone
            if name not in written:
                written[name] = type(attribute)()
                written[name].CopyFrom(attribute)
            attributes[name] = written[name]
        node._op, node._attr = fresh, attributes
