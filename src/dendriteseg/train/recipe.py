"""Recipes: a shipped model rebuilt from nothing by one config file.

A recipe names the datasets (generator, variety, holder share, seed), the
architecture, and both training steps of the paper (pretraining on noisy
labels, fine-tuning on exact ones) with fixed step counts, so the same
recipe on the same machine gives the same weights. :func:`run_recipe`
builds the datasets, merges them into one training manifest (the
benchmark's exact val and test groups stay as they are, so its scores stay
comparable), runs both steps and scores the benchmark's exact test groups
with :func:`dendriteseg.scoring.score_model`.

A recipe may start from an earlier model (``init``: a model file, relative
to the recipe's folder, pinned by its SHA-256 in ``init_sha256``) instead
of random weights: both steps then continue it on the recipe's data. The
file is checked before any work, so a recipe never silently starts from
other weights. Or it may start from another recipe's model (``init_recipe``,
a recipe file relative to its folder), built first in ``work/init``: a
rebuild from nothing.

A recipe that continues a model may end with robust fine-tuning by weight
interpolation (``wise``, :mod:`dendriteseg.train.wise`): the model kept is
the one on the line between the starting and the continued weights with the
largest ``alpha`` whose IoU on the benchmark's exact val groups stays within
``tolerance`` of the starting model's.

``scale`` shrinks a recipe for a quick end-to-end check: steps are scaled
(at least one per epoch), and only the first ``ceil(scale x n)`` of the
extra datasets are built; ``preset`` replaces the datasets' size preset
(``tiny`` builds in seconds) and narrows the patches to fit its scans.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dendriteseg.data import LabelledVolume, read_manifest, select
from dendriteseg.data.manifest import entry_metas
from dendriteseg.errors import InputError
from dendriteseg.io import write_text_atomic
from dendriteseg.models import spec_for
from dendriteseg.scoring import mean_scores, score_model
from dendriteseg.synth.dataset import DATASET_PRESETS, build_dataset
from dendriteseg.train.config import config_from_dict, read_yaml_mapping
from dendriteseg.train.run import train
from dendriteseg.train.wise import Interpolation, WiseResult, alphas_from, choose_alpha


@dataclass(frozen=True)
class DatasetSpec:
    """One synthetic dataset of a recipe (``dendriteseg synth dataset`` options)."""

    seed: int
    variety: str = "standard"
    holder: float = 0.0
    generator: str = "ct"
    min_visible: float = 0.0

    @property
    def folder(self) -> str:
        kind = "image" if self.generator == "image" else ("holder" if self.holder else self.variety)
        return f"data_{kind}{self.seed}" + (f"_visible{self.min_visible:g}" if self.min_visible else "")


@dataclass(frozen=True)
class Stage:
    """One training step of a recipe: fixed steps split into epochs, a peak lr, extra settings."""

    steps: int
    lr: float
    epochs: int = 4
    warmup: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """Everything that rebuilds a model: datasets, architecture and the two training steps."""

    name: str
    model: str
    model_args: dict[str, Any]
    patch: tuple[int, int, int]
    batch: int
    pretrain: Stage
    finetune: Stage
    preset: str = "small"
    benchmark_seed: int = 0
    datasets: tuple[DatasetSpec, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # of both stages
    seed: int = 0
    init: str | None = None
    init_sha256: str | None = None
    init_recipe: str | None = None
    wise: Interpolation | None = None
    shrunk: tuple[float, str | None] | None = None  # set by scaled(); the init recipe is shrunk alike

    def scaled(self, scale: float, preset: str | None = None) -> Recipe:
        """A smaller recipe for a quick check (see the module notes)."""
        if not 0 < scale <= 1:
            raise InputError(f"scale: expected a number in (0, 1], got {scale}")

        def stage(s: Stage) -> Stage:
            steps = max(s.epochs, int(round(s.steps * scale)))
            return Stage(steps, s.lr, s.epochs, min(s.warmup, steps // 10), dict(s.settings))

        keep = math.ceil(scale * len(self.datasets))
        sizes = DATASET_PRESETS.get(preset or self.preset)
        patch = self.patch
        if sizes is not None:  # a smaller dataset preset: patches narrowed to fit its scans
            side = min(sizes.noisy_shape[1], sizes.exact_size) // 16 * 16
            patch = (patch[0], min(patch[1], side), min(patch[2], side))
        return replace(
            self,
            pretrain=stage(self.pretrain),
            finetune=stage(self.finetune),
            datasets=self.datasets[:keep],
            preset=preset or self.preset,
            patch=patch,
            shrunk=(scale, preset),
        )


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe from YAML; unknown keys are errors; ``init`` and ``init_recipe`` are resolved
    against its folder."""
    path = Path(path)
    values = read_yaml_mapping(path, "recipe")
    if values.get("init") and values.get("init_recipe"):
        raise InputError(f"{path}: give init or init_recipe, not both")
    if values.get("init"):
        values["init"] = str((path.parent / values["init"]).resolve())
        if values.get("init_sha256") is None:
            raise InputError(f"{path}: init needs init_sha256 (the SHA-256 of the model file)")
        values["init_sha256"] = str(values["init_sha256"])
    if values.get("init_recipe"):
        values["init_recipe"] = str((path.parent / values["init_recipe"]).resolve())
    if values.get("wise") is not None:
        if not (values.get("init") or values.get("init_recipe")):
            raise InputError(
                f"{path}: wise interpolates towards a starting model: it needs init or init_recipe"
            )
        try:
            values["wise"] = alphas_from(values["wise"])
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    try:
        spec_for(values.get("model", ""))
        return Recipe(
            **{k: v for k, v in values.items() if k not in ("pretrain", "finetune", "datasets", "patch")},
            patch=tuple(values["patch"]),
            pretrain=Stage(**values["pretrain"]),
            finetune=Stage(**values["finetune"]),
            datasets=tuple(DatasetSpec(**d) for d in values.get("datasets", [])),
        )
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a recipe ({exc})") from None


def build_manifest(recipe: Recipe, work: Path, on_entry: Callable | None = None) -> tuple[Path, Path]:
    """Build the recipe's datasets in ``work``; returns the benchmark's manifest and the training one.

    Every entry of the extra datasets joins the train split (noisy ones for
    pretraining, exact groups for fine-tuning); the benchmark keeps its splits.
    """
    bench = build_dataset(work / "data", preset=recipe.preset, seed=recipe.benchmark_seed, on_entry=on_entry)
    entries = [_relative(e, bench.parent, work) for e in json.loads(bench.read_text())["entries"]]
    for spec in recipe.datasets:
        extra = build_dataset(
            work / spec.folder,
            preset=recipe.preset,
            seed=spec.seed,
            variety=spec.variety,
            holder=spec.holder,
            generator=spec.generator,
            min_visible=spec.min_visible,
            on_entry=on_entry,
        )
        prefix = spec.folder.removeprefix("data_")
        for entry in json.loads(extra.read_text())["entries"]:
            entry = _relative(entry, extra.parent, work)
            entry.update(name=f"{prefix}_{entry['name']}", split="train", group=None)
            entries.append(entry)
    path = work / "manifest_train.json"
    write_text_atomic(path, json.dumps({"entries": entries}, indent=2) + "\n")
    return bench, path


def _relative(entry: dict, folder: Path, work: Path) -> dict:
    prefix = folder.relative_to(work)
    paths = ("image", "label", "meta", "exact_label")
    return {k: (str(prefix / v) if k in paths else v) for k, v in entry.items()}


def stage_config(recipe: Recipe, stage: Stage, manifest: Path, out: Path, quality: str) -> Any:
    """The :class:`~dendriteseg.train.TrainConfig` of one stage of a recipe."""
    values = {
        "data": str(manifest),
        "out": str(out),
        "model": recipe.model,
        "model_args": dict(recipe.model_args),
        "patch": list(recipe.patch),
        "batch": recipe.batch,
        "train_quality": quality,
        "lr": stage.lr,
        "lr_schedule": "cosine",
        "warmup_steps": stage.warmup,
        "epochs": stage.epochs,
        "steps_per_epoch": math.ceil(stage.steps / stage.epochs),
        "seed": recipe.seed,
    }
    overrides = [f"{k}={json.dumps(v)}" for k, v in {**recipe.settings, **stage.settings}.items()]
    return config_from_dict(values, overrides)


@dataclass
class RecipeResult:
    """What :func:`run_recipe` made: the model kept, its test scores, and (with ``wise``) the
    interpolation chosen."""

    model: Path
    pretrained: Path
    test_scores: dict[str, float]
    benchmark: Path
    wise: WiseResult | None = None


def run_recipe(
    recipe: Recipe,
    work: str | Path,
    *,
    on_entry: Callable | None = None,
    on_epoch: Callable[[str, int, dict], None] | None = None,
    init: Path | None = None,
) -> RecipeResult:
    """Build the datasets, pretrain, fine-tune and score the benchmark's exact test groups.

    ``work`` holds the datasets and the runs (``pre/``, ``ft/``, ``init/``,
    ``wise/``); a killed recipe resumes where it stopped when run again into
    the same folder. ``init`` starts from that model file instead of the
    recipe's ``init`` or ``init_recipe`` (the exact weights a shipped model
    was continued from).
    """
    work = Path(work)
    if init is not None:
        if not Path(init).is_file():
            raise InputError(f"{init}: the starting model does not exist")
    elif recipe.init_recipe:
        first = load_recipe(recipe.init_recipe)
        first = first.scaled(*recipe.shrunk) if recipe.shrunk else first
        init = run_recipe(first, work / "init", on_entry=on_entry, on_epoch=on_epoch).model
    else:
        init = check_init(recipe)
    work.mkdir(parents=True, exist_ok=True)
    bench, manifest = build_manifest(recipe, work, on_entry)

    def report(stage: str) -> Callable[[int, dict], None]:
        return lambda epoch, record: on_epoch(stage, epoch, record) if on_epoch else None

    pre = train(
        stage_config(recipe, recipe.pretrain, manifest, work / "pre", "noisy"),
        parent=init,
        on_epoch=report("pre"),
    )
    ft_config = stage_config(recipe, recipe.finetune, manifest, work / "ft", "exact")
    best = train(ft_config, parent=pre, on_epoch=report("ft"))
    wise = None
    if recipe.wise and init is not None:
        vals = exact_volumes(bench, "val")
        wise = choose_alpha(init, best, lambda path: _score(path, vals)["iou"], work / "wise", recipe.wise)
        best = wise.model
    return RecipeResult(best, pre, score_test_groups(best, bench), bench, wise)


def exact_volumes(manifest: Path, split: str) -> list[LabelledVolume]:
    """The exact-label volumes of one split of a dataset manifest."""
    return [
        LabelledVolume.from_entry(e) for e in select(read_manifest(manifest), quality="exact", split=split)
    ]


def _score(model: Path, volumes: list[LabelledVolume]) -> dict[str, float]:
    return score_model(model, volumes, window=(0.0, 1.0), device="cpu", precision="fp32").mean


SHOWN_FLOOR = 1.0
"""A test scan counts as one whose dendrites show when its ``visible_contrast`` is at least this."""


def score_test_groups(model: Path, bench: Path) -> dict[str, Any]:
    """The mean scores of ``model`` on the exact test groups of the benchmark ``bench``, and under
    ``"shown"`` the same over the test scans whose dendrites show in the image (``visible_contrast``
    in their ``meta.json`` at least :data:`SHOWN_FLOOR`; a scan whose meta records none counts).

    A model's score on a scan whose dendrites do not show measures how well it guesses from the
    generator's habits, not what it sees: ``scripts/train_default.py`` prints both, so that a loss
    there can be told from a loss on what the image shows.
    """
    volumes = exact_volumes(bench, "test")
    scores = score_model(model, volumes, window=(0.0, 1.0), device="cpu", precision="fp32")
    contrasts = visible_contrasts(bench, "test").items()
    shown = {n: e for (n, c), e in zip(contrasts, scores.volumes, strict=True) if not c < SHOWN_FLOOR}
    summary = {**mean_scores(list(shown.values())), "scans": list(shown), "floor": SHOWN_FLOOR}
    return {**scores.mean, "shown": summary}


def visible_contrasts(manifest: Path, split: str) -> dict[str, float]:
    """Each exact entry of one split (in :func:`exact_volumes` order): the ``visible_contrast`` its
    ``meta.json`` records, NaN where it records none."""
    out = {}
    for entry, meta in entry_metas(manifest, quality="exact", split=split):
        value = None if meta is None else meta.get("visible_contrast")
        out[entry["name"]] = math.nan if value is None else float(value)
    return out


def check_init(recipe: Recipe) -> Path | None:
    """The recipe's starting model file, after checking it exists and is the pinned one."""
    if recipe.init is None:
        return None
    path = Path(recipe.init)
    if not path.is_file():
        raise InputError(f"{path}: the recipe's init model does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != recipe.init_sha256:
        raise InputError(
            f"{path}: SHA-256 {digest[:12]}... is not the recipe's init_sha256 {recipe.init_sha256}"
        )
    return path


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data (what a model's JSON records)."""
    out = asdict(recipe)
    out["patch"] = list(recipe.patch)
    out["datasets"] = [asdict(d) for d in recipe.datasets]
    for key in ("init", "init_recipe"):  # resolved when read; recorded as the user's tree names them
        if out.get(key):
            out[key] = _relative_to_cwd(out[key])
    if recipe.wise:
        out["wise"] = {"alphas": list(recipe.wise.alphas), "tolerance": recipe.wise.tolerance}
    return out


def _relative_to_cwd(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
