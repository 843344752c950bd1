"""Where and at which precision torch runs: one rule for training and inference.

"auto" picks CUDA when present, else the CPU; bf16 on GPUs that support it
(fp16 elsewhere), and on CPUs only where oneDNN reports bf16 units
(AVX-512 BF16 or AMX): without them bf16 is emulated and runs slower than
fp32 (``benchmarks/train_throughput.py`` measures both).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from dendriteseg.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AMP_MODES = ("auto", "bf16", "none")  # training configs' names: "none" is fp32


def resolve_device(device: Any = "auto") -> Any:
    """A ``torch.device`` from "auto", "cpu", "cuda" or "cuda:N" (or a device)."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise InputError(f"device: expected auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device}: CUDA is not available on this machine")
    return torch.device(device)


def cpu_has_bf16() -> bool:
    """Whether oneDNN reports native bf16 arithmetic (AVX-512 BF16 or AMX) on this CPU."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: Any) -> str:
    """ "auto": bf16 on GPUs that have it (else fp16), bf16 on CPUs with bf16 units, else fp32."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"precision: expected {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def precision_for_amp(amp: str) -> str:
    """A training config's ``amp`` as an inference precision (same hardware rule)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    return {"auto": "auto", "bf16": "bf16", "none": "fp32"}[amp]


def autocast(device: Any, precision: str) -> Any:
    """The autocast context for a resolved precision (a null context for fp32)."""
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def training_autocast(device: Any, amp: str) -> tuple[Any, Any]:
    """The autocast context and grad scaler (fp16 only, else None) a training config's ``amp`` asks for.

    "bf16" forces bf16 autocast even where the rule above would not choose it.
    """
    import torch

    precision = resolve_precision(precision_for_amp(amp), device)
    if amp == "bf16" and precision == "fp32":
        precision = "bf16"
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return autocast(device, precision), scaler
