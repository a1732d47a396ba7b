"""Model graphs for TensorBoard's Graphs dashboard: a traced ``torch.nn.Module`` (needs torch) and an ONNX
model file (needs onnx), as serialized ``GraphDef`` messages."""

from __future__ import annotations

import itertools
import os
from typing import Any

__all__ = ["onnx_graph", "torch_graph"]


def torch_graph(model: Any, input_to_model: Any, verbose: bool, use_strict_trace: bool) -> tuple[bytes, bytes]:
    """``(GraphDef, RunMetadata)`` bytes of ``model`` traced with ``input_to_model``, built by torch's own
    TensorBoard graph exporter (``torch.jit.trace``), the same graph torch's SummaryWriter writes."""
    try:
        import torch  # noqa: F401
        from torch.utils.tensorboard import _pytorch_graph
    except ImportError as exc:  # torch is optional: only this method needs it
        raise ImportError(
            "add_graph traces a torch.nn.Module and needs torch: pip install torch "
            "(every other SummaryWriter method works without it)"
        ) from exc
    build: Any = _pytorch_graph.graph
    graph, stepstats = build(model, input_to_model, verbose, use_strict_trace)
    return bytes(graph.SerializeToString()), bytes(stepstats.SerializeToString())


def onnx_graph(path: str | os.PathLike[str]) -> bytes:
    """``GraphDef`` bytes of an ONNX model file: its inputs and outputs as Variable nodes with dtype and
    shape, then one node per operator with its parameters as text."""
    try:
        onnx: Any = __import__("onnx")
    except ImportError as exc:
        raise ImportError("add_onnx_graph reads ONNX files and needs onnx: pip install onnx") from exc
    from ._builders import TensorShapeProto, _pb

    AttrValue = _pb("tensorboard.compat.proto.attr_value_pb2").AttrValue
    GraphDef = _pb("tensorboard.compat.proto.graph_pb2").GraphDef
    NodeDef = _pb("tensorboard.compat.proto.node_def_pb2").NodeDef
    VersionDef = _pb("tensorboard.compat.proto.versions_pb2").VersionDef

    g = onnx.load(os.fspath(path)).graph
    nodes = []
    for io_node in itertools.chain(g.input, g.output):
        tt = io_node.type.tensor_type
        shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=d.dim_value) for d in tt.shape.dim])
        attr = {"dtype": AttrValue(type=tt.elem_type), "shape": AttrValue(shape=shape)}
        nodes.append(NodeDef(name=io_node.name, op="Variable", input=[], attr=attr))
    for node in g.node:
        params = ", ".join(" = ".join(str(f[1]) for f in a.ListFields()) for a in node.attribute)
        nodes.append(
            NodeDef(
                name=node.output[0],
                op=node.op_type,
                input=list(node.input),
                attr={"parameters": AttrValue(s=params.encode("utf_8"))},
            )
        )
    return bytes(GraphDef(node=nodes, versions=VersionDef(producer=22)).SerializeToString())
