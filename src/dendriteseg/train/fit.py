"""The training loop: patches -> augment -> model -> loss, validation with the
paper's metrics each epoch, best-checkpoint selection, and resume.

``fit`` knows nothing about YAML or hyperparameter search: it takes a
built model, a patch sampler, validation volumes and a :class:`TrainConfig`,
and reports each epoch through ``on_epoch`` (which HPO uses to prune).

Files in ``out``: ``last.safetensors`` and ``best.safetensors`` (model
files), ``optimizer.safetensors`` + ``state.json`` (to resume after a
crash), ``log.jsonl`` (one line per epoch) and ``curve.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dendriteseg.data.augment import augment
from dendriteseg.data.volumes import NORMALISATION, LabelledVolume, PatchSampler
from dendriteseg.errors import InputError
from dendriteseg.io import write_text_atomic
from dendriteseg.metrics import score_slices, summarize
from dendriteseg.models.files import ModelInfo, save_model
from dendriteseg.train.config import AMP_MODES, TrainConfig, config_to_dict

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_for(device: torch.device, amp: str):
    """The autocast context (and grad scaler) a config asks for.

    "auto": bf16 on GPUs that support it (else fp16 with a scaler); on the
    CPU bf16 only where it has bf16 units (AVX-512 BF16 / AMX: unet3d trained
    3.6x faster in bf16, benchmarks/train_throughput.py), else fp32 (on an
    AVX2-only CPU bf16 training of 3D convolutions measured 50x slower).
    "bf16" forces bf16 autocast on either; "none" is fp32.
    """
    from dendriteseg.infer.predictor import cpu_has_bf16

    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "none" or (amp == "auto" and device.type == "cpu" and not cpu_has_bf16()):
        return nullcontext(), None
    if device.type == "cuda":
        if amp == "bf16" or torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16), None
        return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16), None


def is_2d(model: torch.nn.Module) -> bool:
    return getattr(model, "dims", 3) == 2


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 1.0, boundary_weight: float = 0.0
) -> torch.Tensor:
    """Cross-entropy (optionally up-weighted near label boundaries) + soft Dice of the dendrite class."""
    logits = logits.float()
    target = target.long()
    ce = F.cross_entropy(logits, target, reduction="none")
    if boundary_weight > 0:  # in-plane label edges: dilation minus erosion (3 x 3)
        h, w = target.shape[-2:]
        flat = target.float().reshape(-1, 1, h, w)
        edge = F.max_pool2d(flat, 3, 1, 1) + F.max_pool2d(-flat, 3, 1, 1)
        ce = ce * (1 + boundary_weight * edge.reshape(ce.shape))
    loss = ce.mean()
    if dice_weight > 0:
        prob = logits.softmax(1)[:, 1]
        tgt = target.float()
        inter = (prob * tgt).sum()
        dice = 1 - (2 * inter + 1) / (prob.sum() + tgt.sum() + 1)
        loss = loss + dice_weight * dice
    return loss


@torch.inference_mode()
def predict_labels(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    depth: int = 4,
    device: torch.device | None = None,
    amp: str = "auto",
) -> np.ndarray:
    """Labels of a normalised (z, y, x) volume: whole slices, z-slabs of ``depth`` for 3D models."""
    device = device or next(model.parameters()).device
    ctx, _ = autocast_for(device, amp)
    model.eval()
    nz = image.shape[0]
    out = np.zeros(image.shape, np.uint8)
    step = 8 if is_2d(model) else depth
    for z0 in range(0, nz, step):
        z1 = min(z0 + step, nz)
        if is_2d(model):
            x = torch.from_numpy(np.ascontiguousarray(image[z0:z1]))[:, None].to(device)
            with ctx:
                logits = model(x).float()
            out[z0:z1] = (logits[:, 1] > logits[:, 0]).cpu().numpy()
        else:
            s0 = max(0, min(z0, nz - depth))  # keep full-depth slabs at the end
            x = torch.from_numpy(np.ascontiguousarray(image[s0 : s0 + depth]))[None, None].to(device)
            with ctx:
                logits = model(x).float()[0]
            pred = (logits[1] > logits[0]).cpu().numpy()
            out[z0:z1] = pred[z0 - s0 : z1 - s0]
    return out


def validate(
    model: torch.nn.Module, volumes: list[LabelledVolume], *, depth: int, device: torch.device, amp: str
) -> dict[str, float]:
    """Mean slice scores over validation volumes (NaN-mean per volume, then mean)."""
    scores = []
    for vol in volumes:
        pred = predict_labels(model, vol.image, depth=depth, device=device, amp=amp)
        scores.append(summarize(score_slices(pred, vol.label)))

    def mean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return float(np.mean(kept)) if kept else math.nan

    return {k: mean([getattr(s, k) for s in scores]) for k in ("accuracy", "iou", "bf1", "bde")}


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of global step ``step`` (0-based) under ``config``'s schedule
    (a pure function of the step, so a resumed run follows the same curve)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    total = max(1, config.epochs * config.steps_per_epoch - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / total)
    floor = config.lr * config.min_lr
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _better(new: dict[str, float], best: dict[str, float] | None) -> bool:
    if best is None:
        return True
    if math.isnan(new["iou"]):
        return False
    if math.isnan(best["iou"]) or new["iou"] > best["iou"] + 1e-6:
        return True
    return abs(new["iou"] - best["iou"]) <= 1e-6 and new["bde"] < best["bde"]


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    state = opt.state_dict()
    tensors, plain = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{idx}.{key}"] = value
    temp = path.with_name(path.name + ".partial")
    save_file(tensors, str(temp))
    os.replace(temp, path)
    return {"param_groups": state["param_groups"], "plain": plain}


def _load_optimizer(opt: torch.optim.Optimizer, path: Path, saved: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(saved["plain"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def _plot_curve(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    a.set_xlabel("epoch")
    a.legend()
    for key in ("iou", "bf1"):
        b.plot(epochs, [h["val"][key] for h in history], "o-", label=f"val {key}")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    for axis in (a, b):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    fig.tight_layout()
    temp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(temp, dpi=100)
    plt.close(fig)
    os.replace(temp, path)


def fit(
    model: torch.nn.Module,
    sampler: PatchSampler,
    val_volumes: list[LabelledVolume],
    config: TrainConfig,
    *,
    info: ModelInfo,
    out_dir: str | Path | None = None,
    resume: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model``; returns the per-epoch history.

    Parameters
    ----------
    model : torch.nn.Module
        Built already (``build_model``), possibly with loaded weights.
    sampler : PatchSampler
        Training patches.
    val_volumes : list of LabelledVolume
        Scored with IoU/BF1/BDE after each epoch; the best epoch is kept.
    config : TrainConfig
    info : ModelInfo
        Architecture and provenance written into the model files (the
        training history is added to the provenance).
    out_dir : path, optional
        Default ``config.out``. With ``resume`` and a ``state.json`` there,
        training continues from the last finished epoch; if that state is
        another run's (other settings, architecture or starting weights;
        ``RESUMABLE`` settings may change), an :class:`InputError` says so.
    on_step : callable(step, steps_per_epoch, patches_per_second), optional
    on_epoch : callable(epoch, record), optional
        May raise to stop (e.g. an HPO pruner).
    """
    out = Path(out_dir or config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model.to(device)
    channels_last = not is_2d(model)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    if config.freeze_encoder and hasattr(model, "down"):
        for p in model.down.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ctx, scaler = autocast_for(device, config.amp)
    history: list[dict[str, Any]] = []
    best: dict[str, float] | None = None
    start_epoch = 0
    state_path = out / "state.json"
    run = _run_identity(model, config, info)
    if resume and state_path.exists():
        from safetensors.torch import load_file

        saved = json.loads(state_path.read_text())
        _check_same_run(out, saved.get("run"), run)
        try:
            model.load_state_dict(load_file(str(out / "last.safetensors"), device=str(device)))
        except RuntimeError:  # (a state written before the check above, of another architecture)
            raise InputError(
                f"{out}: holds another training run (its model is of another size); "
                "name a new output folder (--set out=...) or remove this one"
            ) from None
        _load_optimizer(opt, out / "optimizer.safetensors", saved["optimizer"])
        history, best, start_epoch = saved["history"], saved["best"], saved["epoch"]
        gen.set_state(torch.tensor(saved["torch_generator"], dtype=torch.uint8))
        sampler.gen.bit_generator.state = saved["sampler_state"]
        torch.set_rng_state(torch.tensor(saved["torch_rng"], dtype=torch.uint8))
        log.info("resuming %s after epoch %d", out, start_epoch)
    two_d = is_2d(model)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        t0 = time.perf_counter()
        losses = []
        skipped = 0
        for step in range(config.steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = learning_rate(config, epoch * config.steps_per_epoch + step)
            x_np, y_np = sampler.batch(config.batch)
            x = torch.from_numpy(x_np).to(device)
            y = torch.from_numpy(y_np).to(device)
            x, y = augment(x, y, config.augment, gen)
            if two_d:
                x, y = x[:, :, 0], y[:, 0]
            elif channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with ctx:
                logits = model(x)
            loss = segmentation_loss(
                logits, y, dice_weight=config.dice_weight, boundary_weight=config.boundary_weight
            )
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                # skip a step whose gradients are not finite (as a grad scaler would)
                if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, float("inf"))):
                    opt.step()
                else:
                    skipped += 1
                    if skipped > max(10, config.steps_per_epoch // 2):
                        raise RuntimeError(
                            f"training diverged: {skipped} steps of epoch {epoch + 1} had non-finite "
                            "gradients; lower lr or set amp: none"
                        )
            if torch.isfinite(loss):
                losses.append(float(loss.detach()))
            if on_step:
                rate = (step + 1) * config.batch / (time.perf_counter() - t0)
                on_step(step + 1, config.steps_per_epoch, rate)
        train_seconds = time.perf_counter() - t0
        scores = (
            validate(model, val_volumes, depth=config.patch[0], device=device, amp=config.amp)
            if val_volumes
            else {"accuracy": math.nan, "iou": math.nan, "bf1": math.nan, "bde": math.nan}
        )
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)) if losses else math.nan,
            "skipped_steps": skipped,
            "val": scores,
            "seconds": round(time.perf_counter() - t0, 2),
            "patches_per_second": round(config.steps_per_epoch * config.batch / train_seconds, 2),
            "voxels_per_second": round(
                config.steps_per_epoch * config.batch * int(np.prod(config.patch)) / train_seconds
            ),
        }
        history.append(record)
        provenance = {**info.provenance, "config": config_to_dict(config), "history": history}
        epoch_info = ModelInfo(info.architecture, info.arguments, info.normalisation, provenance)
        save_model(out / "last.safetensors", model, epoch_info)
        if _better(scores, best) or not val_volumes:
            best = scores
            shutil.copyfile(out / "last.safetensors", out / ".best.partial")
            os.replace(out / ".best.partial", out / "best.safetensors")
            record["best"] = True
        optimizer_state = _save_optimizer(opt, out / "optimizer.safetensors")
        write_text_atomic(
            state_path,
            json.dumps(
                {
                    "run": run,
                    "epoch": epoch + 1,
                    "history": history,
                    "best": best,
                    "optimizer": optimizer_state,
                    "torch_generator": gen.get_state().tolist(),
                    "torch_rng": torch.get_rng_state().tolist(),
                    "sampler_state": sampler.gen.bit_generator.state,
                }
            ),
        )
        with open(out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        _plot_curve(history, out / "curve.png")
        if on_epoch:
            on_epoch(epoch + 1, record)
    return history


RESUMABLE = ("out", "epochs", "device", "amp")  # settings a resumed run may change


def _run_identity(model: torch.nn.Module, config: TrainConfig, info: ModelInfo) -> dict[str, Any]:
    """What a run folder's state must match to be resumed: the settings (but
    ``RESUMABLE``), the architecture as built and, for a fine-tuning, the starting
    weights (a digest of the parent's; a run from scratch starts from its seed)."""
    skip = (*RESUMABLE, "model", "model_args")  # the architecture is compared as built (parent's or config's)
    settings = {k: v for k, v in config_to_dict(config).items() if k not in skip}
    start = "seed"
    if "parent" in info.provenance:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        start = digest.hexdigest()[:16]
    identity = {
        "settings": settings,
        "architecture": info.architecture,
        "arguments": info.arguments,
        "start": start,
    }
    return json.loads(json.dumps(identity))  # as state.json holds it (tuples as lists)


def _check_same_run(out: Path, saved: dict[str, Any] | None, run: dict[str, Any]) -> None:
    if saved is None or saved == run:  # (states written before the check have none)
        return
    differ = [k for k in ("architecture", "arguments") if saved.get(k) != run[k]]
    if saved.get("start") != run["start"]:
        differ.append("starting weights (--from)")
    old, new = saved.get("settings", {}), run["settings"]
    differ += sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    raise InputError(
        f"{out}: holds another training run (it differs in {', '.join(differ)}); "
        "name a new output folder (--set out=...) or remove this one"
    )


__all__ = [
    "NORMALISATION",
    "RESUMABLE",
    "fit",
    "learning_rate",
    "predict_labels",
    "segmentation_loss",
    "validate",
]
