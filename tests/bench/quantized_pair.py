"""Quantized pairs for ferry-transfer-bench, made from a real retrained ONNX pair with the tools
that ship quantized models: OLD and NEW (two releases of one ONNX model) become
  OUT/old.int8.onnx, OUT/new.int8.onnx  (onnxruntime's dynamic int8 quantization of the Conv,
  LSTM and MatMul weights, subgraphs included), and
  OUT/old.q8_0.gguf, OUT/new.q8_0.gguf  (the same weights in GGUF, the file edge LLM runtimes
  load: Q8_0 blocks where a tensor's rows are a multiple of 32 long, else f32, as llama.cpp's
  converter does).
Both outputs are deterministic, so the pair is the same on every run.

Usage: python quantized_pair.py OLD.onnx NEW.onnx OUT_DIR"""
import os
import sys

import gguf
import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

Q8_0_BLOCK = 32


def graphs(graph):
    """`graph` and every subgraph in it (the branches of If, the bodies of Loop and Scan)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attr.g)
            for sub in attr.graphs:
                yield from graphs(sub)


def constants_as_initializers(model) -> None:
    """Moves the weights of Constant nodes into initializers, in every subgraph: exporters
    (torch.onnx for silero-vad) leave them as nodes, and quantizers only look at initializers."""
    for graph in graphs(model.graph):
        keep = []
        for node in graph.node:
            tensor = next(
                (a.t for a in node.attribute if node.op_type == "Constant" and a.name == "value"),
                None,
            )
            if tensor is None or numpy_helper.to_array(tensor).dtype.kind != "f":
                keep.append(node)
                continue
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        del graph.node[:]
        graph.node.extend(keep)


def to_gguf(model, name: str, out_path: str) -> None:
    writer = gguf.GGUFWriter(out_path, arch="onnx-weights")
    writer.add_name(name)
    seen = set()
    for init in (i for g in graphs(model.graph) for i in g.initializer):
        if init.name in seen:
            continue
        seen.add(init.name)
        array = numpy_helper.to_array(init)
        if array.dtype.kind != "f" or array.size == 0:
            continue
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.shape[-1] % Q8_0_BLOCK == 0:
            packed = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(init.name, packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(init.name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    old, new, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    for label, path in (("old", old), ("new", new)):
        model = onnx.load(path)
        constants_as_initializers(model)
        floats = os.path.join(out, f"{label}.f32.onnx")
        onnx.save(model, floats)
        int8 = os.path.join(out, f"{label}.int8.onnx")
        quantize_dynamic(
            floats,
            int8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "LSTM", "MatMul", "Gemm"],
            extra_options={"EnableSubgraph": True},
        )
        os.remove(floats)
        # A model onnxruntime cannot load would not be a pair anyone ships.
        onnxruntime.InferenceSession(int8, providers=["CPUExecutionProvider"])
        to_gguf(model, os.path.basename(path), os.path.join(out, f"{label}.q8_0.gguf"))


if __name__ == "__main__":
    main()
