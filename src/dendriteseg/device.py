"""Where and at which precision torch runs: the rules for inference and for training.

"auto" picks CUDA when present, else the CPU. Inference (:func:`resolve_precision`):
bf16 on GPUs that support it (fp16 elsewhere), and on CPUs only where oneDNN
reports bf16 units (AVX-512 BF16 or AMX): without them bf16 is emulated and
runs slower than fp32 (``benchmarks/train_throughput.py`` measures both).

Training (:func:`training_precision`) is stricter on the CPU: "auto" is
always fp32 there. oneDNN's bf16 backward convolution for AMX
(``brgemm_convolution_bwd_weights``) hangs or corrupts memory when a 3D
network trains (reported on 4th-generation Xeon); forward passes are not
affected. bf16 training on a CPU must be asked for, and is refused where
the CPU has AMX unless oneDNN is capped below it (``ONEDNN_MAX_CPU_ISA``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from dendriteseg.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA) that leave AMX out
_BELOW_AMX = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX10_1_512",
)


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


def autocast(device: Any, precision: str) -> Any:
    """The autocast context for a resolved precision (a null context for fp32)."""
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tile units (Intel Xeon, 4th generation and later)."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        try:
            return bool(probe())
        except RuntimeError:
            pass
    try:
        with open("/proc/cpuinfo") as fh:
            return "amx_tile" in fh.read()
    except OSError:
        return False


def onednn_capped_below_amx(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment caps oneDNN at an instruction set without AMX."""
    env = os.environ if environ is None else environ
    cap = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return cap in _BELOW_AMX


def training_precision(
    precision: str, device: Any, *, has_amx: bool | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The precision a training run uses: "fp32", "bf16" or "fp16" (see the module notes).

    On CUDA "auto" is bf16 where supported, else fp16. On the CPU "auto" is
    fp32; "bf16" is refused (an :class:`InputError` saying what to do) where
    the CPU has AMX and oneDNN is not capped below it; "fp16" is refused
    (no gradient scaling on the CPU). ``has_amx`` and ``environ`` stand in
    for the machine's (tests).
    """
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"precision: expected {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision in ("auto", "fp32"):
        return "fp32"
    if precision == "fp16":
        raise InputError("precision fp16: trains on CUDA only; on the CPU use fp32 (or bf16)")
    amx = cpu_has_amx() if has_amx is None else has_amx
    if amx and not onednn_capped_below_amx(environ):
        raise InputError(
            "precision bf16: oneDNN's bf16 training kernels hang or crash on CPUs with AMX; "
            "train in fp32, or set ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 before starting"
        )
    return "bf16"


def training_autocast(device: Any, precision: str) -> tuple[Any, Any]:
    """The autocast context and grad scaler (fp16 only, else None) for a resolved training precision."""
    import torch

    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return autocast(device, precision), scaler
