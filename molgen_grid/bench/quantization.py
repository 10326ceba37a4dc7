"""The `quantization` axis: torchao's quantization of the loaded model's Linear layers, and what was applied,
read back from the modules.

torchao swaps each Linear's weight for a quantized tensor subclass (`quantize_`, what transformers' TorchAoConfig
calls while loading); quantizing after loading keeps one loading path for the embedded model and a real
checkpoint alike. torchao is imported only by a cell that asks for it (its import is slow and loud). A method
this machine has no kernels for is torchao's refusal, and the cell ends `unsupported` with its words (int4 on a
CPU: "Requires mslk >= 1.0.0"). The read-back is the weights' tensor classes and whether activations are
quantized as well (int8_dynamic), with the model's size in memory before and after.
"""
from __future__ import annotations

from collections import Counter
from importlib import metadata
from typing import Any

import torch

#: The torchao config class of each method (conf/quantization/).
CONFIGS = {
    "int8_weight_only": "Int8WeightOnlyConfig",
    "int8_dynamic": "Int8DynamicActivationInt8WeightConfig",
    "int4_weight_only": "Int4WeightOnlyConfig",
}


def plain_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers, all plain tensors."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def quantize(model: torch.nn.Module, quantization_cfg: Any) -> dict[str, Any]:
    """Quantize `model` in place as the option says; what was applied, read back, and the model's bytes."""
    method = str(quantization_cfg.method)
    if method == "none":
        return {"method": method, **applied(model), "bytes": plain_bytes(model)}
    import torchao.quantization as tq
    from torchao.utils import get_model_size_in_bytes  # counts a quantized weight's int data and scales

    before = plain_bytes(model)
    options = {"group_size": int(quantization_cfg.group_size)} if "group_size" in quantization_cfg else {}
    tq.quantize_(model, getattr(tq, CONFIGS[method])(**options))
    return {"method": method, **applied(model), "bytes": int(get_model_size_in_bytes(model)),
            "bytes_before": before, "torchao": metadata.version("torchao")}


def applied(model: torch.nn.Module) -> dict[str, Any]:
    """The Linear layers' weight classes (how many of each) and whether their activations are quantized."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return {"weight_classes": dict(Counter(type(w).__name__ for w in weights)),
            "dynamic_activations": any(getattr(w, "act_quant_kwargs", None) is not None for w in weights)}
