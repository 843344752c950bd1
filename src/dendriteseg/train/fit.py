"""The training loop: patches -> augment -> model -> loss, validation with the
paper's metrics each epoch, best-checkpoint selection, and resume.

``fit`` knows nothing about YAML or hyperparameter search: it takes a
built model, a patch sampler, validation volumes and a :class:`TrainConfig`,
and reports each epoch through ``on_epoch`` (which HPO uses to prune).

Files in ``out``: ``last.safetensors`` and ``best.safetensors`` (model
files), ``resume.safetensors`` (weights, optimiser and run state in one
file, replaced atomically after each epoch: what a killed run resumes from),
``state.json`` (the same run state, for people), ``log.jsonl`` (one line per epoch) and ``curve.png``.
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dendriteseg.data.augment import augment
from dendriteseg.data.volumes import UNLABELLED, LabelledVolume, PatchSampler
from dendriteseg.device import resolve_device, training_autocast, training_precision
from dendriteseg.errors import InputError
from dendriteseg.heap import kept_heap
from dendriteseg.infer.predictor import TorchPredictor
from dendriteseg.io import write_text_atomic
from dendriteseg.io.outputs import save_figure
from dendriteseg.models import encoder_parameters
from dendriteseg.models.files import ModelInfo, save_model
from dendriteseg.scoring import SCORES, score_model
from dendriteseg.train.config import TrainConfig, config_to_dict

log = logging.getLogger(__name__)


def is_2d(model: torch.nn.Module) -> bool:
    return getattr(model, "dims", 3) == 2


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 1.0, boundary_weight: float = 0.0
) -> torch.Tensor:
    """Cross-entropy (optionally up-weighted near label boundaries) + soft Dice of the dendrite class.

    Voxels labelled :data:`~dendriteseg.data.UNLABELLED` (sparse slices,
    scribbles) add nothing; a batch without a labelled voxel has loss 0.
    """
    logits = logits.float()
    target = target.long()
    known = target != UNLABELLED
    sparse = not bool(known.all())
    if sparse:
        target = torch.where(known, target, torch.zeros_like(target))
    ce = F.cross_entropy(logits, target, reduction="none")
    if boundary_weight > 0:  # in-plane label edges: dilation minus erosion (3 x 3)
        h, w = target.shape[-2:]
        flat = target.float().reshape(-1, 1, h, w)
        edge = F.max_pool2d(flat, 3, 1, 1) + F.max_pool2d(-flat, 3, 1, 1)
        ce = ce * (1 + boundary_weight * edge.reshape(ce.shape))
    weight = known.float()
    loss = (ce * weight).sum() / weight.sum().clamp(min=1) if sparse else ce.mean()
    if dice_weight > 0:
        prob = logits.softmax(1)[:, 1] * weight
        tgt = target.float() * weight
        inter = (prob * tgt).sum()
        dice = 1 - (2 * inter + 1) / (prob.sum() + tgt.sum() + 1)
        loss = loss + dice_weight * dice * (1.0 if bool(known.any()) else 0.0)
    return loss


def validate(
    model: torch.nn.Module, volumes: list[LabelledVolume], *, depth: int, device: Any, precision: str
) -> dict[str, float]:
    """Mean scores over validation volumes, predicted as ``segment`` predicts a user's volume.

    The volumes are normalised already (window 0..1); a 3D model sees tiles
    ``depth`` slices deep, as its training patches. Scores are summarised per
    volume and averaged ignoring NaN (:func:`dendriteseg.scoring.score_model`).
    """
    if not volumes:
        return {k: math.nan for k in SCORES}
    return _validation_scores(model, volumes, depth=depth, device=device, precision=precision).mean


def validation_labels(
    model: torch.nn.Module, volumes: list[LabelledVolume], *, depth: int, device: Any, precision: str
) -> list[np.ndarray]:
    """The labels ``model`` predicts for each validation volume, as :func:`validate` scores them."""
    scores = _validation_scores(
        model, volumes, depth=depth, device=device, precision=precision, keep_labels=True
    )
    return scores.labels


def _validation_scores(
    model: torch.nn.Module,
    volumes: list[LabelledVolume],
    *,
    depth: int,
    device: Any,
    precision: str,
    **options: Any,
) -> Any:
    predictor = TorchPredictor(
        model,
        device=resolve_device(device),
        precision=precision,
        tile_depth=None if is_2d(model) else depth,
        name="validation",
    )
    # the network's own labels (p > 0.5): early in training it is sure of nothing, and labels by
    # hysteresis (segment's default) would score every epoch 0 until it is, hiding its progress
    options.setdefault("hysteresis", 0.5)
    options.setdefault("tta", False)  # the network as trained, one pass: flips would cost four every epoch
    return score_model(predictor, volumes, window=(0.0, 1.0), **options)


def describe_epoch(record: dict[str, Any]) -> str:
    """One line on a finished epoch: its loss and validation scores."""
    v, best = record["val"], " (best)" if record.get("best") else ""
    scores = f"val IoU {v['iou']:.4f}, BF1 {v['bf1']:.4f}, BDE {v['bde']:.3f}{best}"
    return f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, {scores}"


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
    """Whether a later epoch's validation ``new`` should replace the ``best`` so far: a higher IoU, or
    the same IoU and a BDE no worse (validation that cannot tell two epochs apart, e.g. saturated on a
    few strokes, keeps the one that has trained longer)."""
    if best is None:
        return True
    if math.isnan(new["iou"]):
        return False
    if math.isnan(best["iou"]) or new["iou"] > best["iou"] + 1e-6:
        return True
    if abs(new["iou"] - best["iou"]) > 1e-6:
        return False
    if math.isnan(new["bde"]) or math.isnan(best["bde"]):
        return math.isnan(best["bde"])  # a BDE beats none; none ties none
    return new["bde"] <= best["bde"]


CHECKPOINT = "resume.safetensors"  # model, optimiser and run state in one file: one atomic rename


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimiser's tensors (by ``index.name``) and the rest of its state as plain data."""
    state = opt.state_dict()
    tensors, plain = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(saved["plain"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def save_checkpoint(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Model weights, optimiser state and ``state`` (JSON) in one safetensors file, renamed into place:
    a run killed at any moment leaves either the previous checkpoint or this one, never a mix."""
    from safetensors.torch import save_file

    from dendriteseg.io.outputs import temp_sibling, writing

    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_tensors, optimizer_plain = _optimizer_tensors(opt)
    tensors.update({f"optimizer/{k}": v for k, v in optimizer_tensors.items()})
    metadata = {"state": json.dumps({**state, "optimizer": optimizer_plain})}
    temp = temp_sibling(path)
    try:
        with writing(path):
            save_file(tensors, str(temp), metadata=metadata)
            os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def load_checkpoint(path: Path, device: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict]:
    """(state, model tensors, optimiser tensors) of a checkpoint; a damaged one is an InputError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            state = json.loads((fh.metadata() or {})["state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors and json raise several types
        raise InputError(
            f"{path}: damaged training checkpoint ({type(exc).__name__}); remove it to restart"
        ) from None
    model = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("model/")}
    optimizer = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("optimizer/")}
    return state, model, optimizer


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
    save_figure(fig, path, dpi=100)


@kept_heap()  # each step reuses the memory of the step before (dendriteseg.heap)
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
        Scored with IoU/BF1/BDE after each epoch (:func:`validate`); the best epoch is kept.
    config : TrainConfig
    info : ModelInfo
        Architecture and provenance written into the model files (the
        training history is added to the provenance).
    out_dir : path, optional
        Default ``config.out``. With ``resume`` and a checkpoint there,
        training continues from the last finished epoch; if that state is
        another run's (other settings, architecture or starting weights;
        ``RESUMABLE`` settings may change), an :class:`InputError` says so.
    on_step : callable(step, steps_per_epoch, patches_per_second), optional
    on_epoch : callable(epoch, record), optional
        May raise to stop (e.g. an HPO pruner).
    """
    out = Path(out_dir or config.out)
    out.mkdir(parents=True, exist_ok=True)
    run = _TrainingState(model, sampler, config, info, out)
    if resume and (out / CHECKPOINT).exists():
        run.resume()
    try:
        _epochs(run, model, config, val_volumes, on_step, on_epoch)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a trial pruned or out of time ends here too: its curve shows every epoch
        run.draw_curve()
        raise
    run.draw_curve()
    return run.history


def _epochs(
    run: _TrainingState,
    model: torch.nn.Module,
    config: TrainConfig,
    val_volumes: list[LabelledVolume],
    on_step: Callable[[int, int, float], None] | None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None,
) -> None:
    for epoch in range(run.start_epoch, config.epochs):
        t0 = time.perf_counter()
        losses, skipped = run.train_epoch(epoch, on_step)
        train_seconds = time.perf_counter() - t0
        scores = validate(
            model, val_volumes, depth=config.patch[0], device=run.device, precision=config.precision
        )
        patches = config.steps_per_epoch * config.batch
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)) if losses else math.nan,
            "skipped_steps": skipped,
            "val": scores,
            "seconds": round(time.perf_counter() - t0, 2),
            "patches_per_second": round(patches / train_seconds, 2),
            "voxels_per_second": round(patches * int(np.prod(config.patch)) / train_seconds),
        }
        run.save_epoch(record, keep=_better(scores, run.best) or not val_volumes)
        if on_epoch:
            on_epoch(epoch + 1, record)


class _TrainingState:
    """One training run's moving parts: model on its device, optimiser, random state, history."""

    def __init__(
        self, model: torch.nn.Module, sampler: PatchSampler, config: TrainConfig, info: ModelInfo, out: Path
    ):
        self.model, self.sampler, self.config, self.info, self.out = model, sampler, config, info, out
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.gen = torch.Generator().manual_seed(config.seed)
        model.to(self.device)
        self.channels_last = not is_2d(model)
        if self.channels_last:
            model.to(memory_format=torch.channels_last_3d)
        if config.freeze_encoder:
            for p in encoder_parameters(model, info.architecture):
                p.requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.precision = training_precision(config.precision, self.device)
        self.autocast, self.scaler = training_autocast(self.device, self.precision)
        self.history: list[dict[str, Any]] = []
        self.curve_epochs, self.curve_drawn = 0, time.monotonic()
        self.best: dict[str, float] | None = None
        self.start_epoch = 0
        self.identity = _run_identity(model, config, info)

    def resume(self) -> None:
        """Continue from the checkpoint a previous run of the same settings left in ``out``."""
        saved, weights, optimizer = load_checkpoint(self.out / CHECKPOINT, self.device)
        _check_same_run(self.out, saved.get("run"), self.identity)
        try:
            self.model.load_state_dict(weights)
        except RuntimeError:
            raise InputError(
                f"{self.out}: holds another training run (its model is of another size); "
                "name a new output folder (--set out=...) or remove this one"
            ) from None
        _load_optimizer(self.opt, optimizer, saved["optimizer"])
        self.history, self.best, self.start_epoch = saved["history"], saved["best"], saved["epoch"]
        self.gen.set_state(torch.tensor(saved["torch_generator"], dtype=torch.uint8))
        self.sampler.gen.bit_generator.state = saved["sampler_state"]
        torch.set_rng_state(torch.tensor(saved["torch_rng"], dtype=torch.uint8))
        # the log as the checkpoint knows it: an epoch killed after its log line is not counted twice
        write_text_atomic(self.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        log.info("resuming %s after epoch %d", self.out, self.start_epoch)

    def train_epoch(
        self, epoch: int, on_step: Callable[[int, int, float], None] | None
    ) -> tuple[list[float], int]:
        """One epoch of steps; returns the finite losses and the count of skipped steps."""
        config, model = self.config, self.model
        model.train()
        t0 = time.perf_counter()
        losses: list[float] = []
        skipped = 0
        for step in range(config.steps_per_epoch):
            for group in self.opt.param_groups:
                group["lr"] = learning_rate(config, epoch * config.steps_per_epoch + step)
            loss = self._loss()
            if not self._step(loss):
                skipped += 1
                if skipped > max(10, config.steps_per_epoch // 2):
                    raise RuntimeError(
                        f"training diverged: {skipped} steps of epoch {epoch + 1} had non-finite "
                        "gradients; lower lr or set precision: fp32"
                    )
            if torch.isfinite(loss):
                losses.append(float(loss.detach()))
            if on_step:
                on_step(
                    step + 1, config.steps_per_epoch, (step + 1) * config.batch / (time.perf_counter() - t0)
                )
        return losses, skipped

    def _loss(self) -> torch.Tensor:
        """The loss of one augmented batch of patches."""
        x_np, y_np = self.sampler.batch(self.config.batch)
        x = torch.from_numpy(x_np).to(self.device)
        y = torch.from_numpy(y_np).to(self.device)
        x, y = augment(x, y, self.config.augment, self.gen)
        if is_2d(self.model):
            x, y = x[:, :, 0], y[:, 0]
        elif self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with self.autocast:
            logits = self.model(x)
        return segmentation_loss(
            logits, y, dice_weight=self.config.dice_weight, boundary_weight=self.config.boundary_weight
        )

    def _step(self, loss: torch.Tensor) -> bool:
        """Back-propagate and step; False where the gradients were not finite (step skipped)."""
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            return True
        loss.backward()
        # skip a step whose gradients are not finite (as a grad scaler would)
        if torch.isfinite(torch.nn.utils.clip_grad_norm_(self.params, float("inf"))):
            self.opt.step()
            return True
        return False

    def save_epoch(self, record: dict[str, Any], *, keep: bool) -> None:
        """Write last (and, with ``keep``, best) model, the resumable state, the log and the curve."""
        out, info = self.out, self.info
        self.history.append(record)
        provenance = {
            **info.provenance,
            "config": config_to_dict(self.config),
            "training": {"device": self.device.type, "precision": self.precision},
            "history": self.history,
        }
        epoch_info = ModelInfo(info.architecture, info.arguments, info.normalisation, provenance)
        save_model(out / "last.safetensors", self.model, epoch_info)
        if keep:
            self.best = record["val"]
            shutil.copyfile(out / "last.safetensors", out / ".best.partial")
            os.replace(out / ".best.partial", out / "best.safetensors")
            record["best"] = True
        state = {
            "run": self.identity,
            "epoch": record["epoch"],
            "history": self.history,
            "best": self.best,
            "torch_generator": self.gen.get_state().tolist(),
            "torch_rng": torch.get_rng_state().tolist(),
            "sampler_state": self.sampler.gen.bit_generator.state,
        }
        save_checkpoint(out / CHECKPOINT, self.model, self.opt, state)  # the commit point of the epoch
        summary = {k: state[k] for k in ("run", "epoch", "history", "best")}
        write_text_atomic(
            out / "state.json", json.dumps(summary, indent=1)
        )  # for people; resume reads the checkpoint
        with open(out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if time.monotonic() - self.curve_drawn >= CURVE_EVERY:
            self.draw_curve()

    def draw_curve(self) -> None:
        """Draw ``curve.png`` where it misses epochs (drawing costs about a second: once per
        :data:`CURVE_EVERY` seconds while training, and when the run ends)."""
        if self.history and self.curve_epochs != len(self.history):
            _plot_curve(self.history, self.out / "curve.png")
            self.curve_epochs, self.curve_drawn = len(self.history), time.monotonic()


CURVE_EVERY = 30.0  # seconds between drawings of curve.png while a run trains
RESUMABLE = ("out", "epochs", "device", "precision")  # settings a resumed run may change


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


__all__ = ["RESUMABLE", "fit", "learning_rate", "segmentation_loss", "validate"]
