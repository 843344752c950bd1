"""The study's table and report: ``table2.csv``, ``report.md`` and a self-contained ``report.html``.

Both documents come from one list of blocks (headings, paragraphs, tables,
figures), so they always say the same. The HTML embeds its images (base64)
and records, once the page has loaded, how many of them the browser shows
(``data-images`` and ``data-images-shown`` on ``<body>``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.io.outputs import write_text_atomic
from dendriteseg.reproduce.plan import (
    ARCHITECTURES,
    BASELINES,
    METRICS,
    PAPER_NAMES,
    PAPER_TABLE1,
    PAPER_TABLE2,
    TABLE2_COLUMNS,
    study_budget,
)


@dataclass(frozen=True)
class Summary:
    """One method's scores over its seeds: mean and standard deviation (0 with one seed)."""

    method: str
    hpo: str
    finetune: str
    n: int
    mean: dict[str, float]
    sd: dict[str, float]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Summary]:
    """Rows grouped by method, in the order they first appear."""
    out: dict[str, Summary] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        mean, sd = {}, {}
        for key in (*METRICS, "seconds"):
            values = np.array([r[key] for r in group], float)
            values = values[np.isfinite(values)]
            mean[key] = float(values.mean()) if values.size else math.nan
            sd[key] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[method] = Summary(method, group[0]["hpo"], group[0]["finetune"], len(group), mean, sd)
    return out


def _pm(s: Summary, key: str, scale: float = 1.0, digits: int = 2) -> str:
    mean = s.mean[key] * scale
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {s.sd[key] * scale:.{digits}f}" if s.n > 1 else f"{mean:.{digits}f}"


def _paper_row(method: str) -> tuple[float, ...] | None:
    arch, _, kind = method.rpartition("_")
    if arch not in PAPER_NAMES:
        return None
    if kind == "noisy":
        return PAPER_TABLE2.get((PAPER_NAMES[arch], "no HPO/FT"))
    if kind == "searched":
        return PAPER_TABLE2.get((PAPER_NAMES[arch], "HPO+FT"))
    return None


# ------------------------------------------------------------------ claims
def _bde(s: Summary) -> float:
    """BDE for ranking: a model that finds nothing (BDE undefined) ranks last."""
    return s.mean["bde"] if math.isfinite(s.mean["bde"]) else math.inf


def _beats(better: Summary, worse: Summary) -> tuple[bool | None, float, float]:
    """Whether ``better``'s IoU exceeds ``worse``'s by more than the spread over seeds
    (None: ahead, but one seed gives no spread to compare with); the difference and the spread."""
    diff = better.mean["iou"] - worse.mean["iou"]
    spread = max(better.sd["iou"], worse.sd["iou"])
    if not diff > 0:
        return False, diff, spread
    return (diff > spread if min(better.n, worse.n) > 1 else None), diff, spread


def _cnn_above_classical(summary: dict[str, Summary]) -> tuple[str, bool | None, str] | None:
    """The paper's first claim (every CNN above every classical method), None without both kinds."""
    cnn = [s for s in summary.values() if s.method.rpartition("_")[0] in ARCHITECTURES]
    base = [s for s in summary.values() if s.method in BASELINES]
    if not cnn or not base:
        return None
    worst_iou = min(cnn, key=lambda s: s.mean["iou"])
    best_base_iou = max(base, key=lambda s: s.mean["iou"])
    worst_bde = max(cnn, key=_bde)
    best_base_bde = min(base, key=_bde)
    ok = worst_iou.mean["iou"] > best_base_iou.mean["iou"] and _bde(worst_bde) < _bde(best_base_bde)
    return (
        "Every CNN segments better than every classical method (IoU and BDE).",
        ok,
        f"lowest CNN IoU {worst_iou.mean['iou']:.4f} ({worst_iou.method}) vs best classical "
        f"{best_base_iou.mean['iou']:.4f} ({best_base_iou.method}); highest CNN BDE "
        f"{worst_bde.mean['bde']:.2f} px ({worst_bde.method}) vs best classical "
        f"{best_base_bde.mean['bde']:.2f} px ({best_base_bde.method}).",
    )


def claims(summary: dict[str, Summary]) -> list[tuple[str, bool | None, str]]:
    """Each claim of the paper: its words, whether our run supports it (None: not measured), the numbers."""
    first = _cnn_above_classical(summary)
    found: list[tuple[str, bool | None, str]] = [first] if first else []
    cnn = [s for s in summary.values() if s.method.rpartition("_")[0] in ARCHITECTURES]
    for arch in ARCHITECTURES:
        fixed, searched, noisy = (summary.get(f"{arch}_{k}") for k in ("fixed", "searched", "noisy"))
        if noisy and searched:
            ok, diff, spread = _beats(searched, noisy)
            found.append(
                (
                    f"{PAPER_NAMES[arch]}: the search and fine-tuning beat the untuned model trained "
                    "on noisy labels (the paper's comparison).",
                    ok,
                    f"IoU {searched.mean['iou']:.4f} vs {noisy.mean['iou']:.4f}: {diff:+.4f} "
                    f"(spread over {searched.n} seed(s) {spread:.4f}).",
                )
            )
        if fixed and searched:
            ok, diff, spread = _beats(searched, fixed)
            found.append(
                (
                    f"{PAPER_NAMES[arch]}: the search earns its time: searched beats fixed settings, both "
                    "fine-tuned on the exact labels, at the same epochs.",
                    ok,
                    f"IoU {searched.mean['iou']:.4f} vs {fixed.mean['iou']:.4f}: {diff:+.4f} "
                    f"(spread over {searched.n} seed(s) {spread:.4f}); BDE {searched.mean['bde']:.2f} vs "
                    f"{fixed.mean['bde']:.2f} px.",
                )
            )
    best_by_arch = {
        arch: min((s for s in cnn if s.method.startswith(arch + "_")), key=_bde, default=None)
        for arch in ARCHITECTURES
    }
    if best_by_arch["unet2d"] and (best_by_arch["unet3d"] or best_by_arch["fcdense3d"]):
        best3d = min((s for a, s in best_by_arch.items() if a != "unet2d" and s), key=_bde)
        u2d = best_by_arch["unet2d"]
        found.append(
            (
                "The best 3D model places boundaries better than the 2D U-Net (BDE).",
                _bde(best3d) < _bde(u2d),
                f"BDE {best3d.mean['bde']:.2f} px ({best3d.method}) "
                f"vs {u2d.mean['bde']:.2f} px ({u2d.method}).",
            )
        )
    return found


# mean IoU of noisy against exact labels above which step 1 learns nearly what step 2 would
CLOSE_LABELS = 0.85
# a test group scored below this IoU: the method found next to nothing of its dendrite
FOUND_NOTHING = 0.05


def noisy_label_record(manifest: Path) -> dict[str, Any] | None:
    """How close the dataset's noisy training labels are to the exact ones (mean IoU, from each noisy
    volume's ``meta.json``), and how many noisy training volumes and exact training groups there are;
    None where the manifest's entries do not record it (a user's own data)."""
    from dendriteseg.data.manifest import entry_metas

    try:
        noisy = entry_metas(manifest, quality="noisy", split="train")
        ious = [meta["label_noise"]["iou"] for _, meta in noisy]
        exact = {entry.get("group") for entry, _ in entry_metas(manifest, quality="exact", split="train")}
    except (OSError, ValueError, KeyError, TypeError):  # TypeError: an entry without its meta (None)
        return None
    if not ious:
        return None
    return {"iou": float(np.mean(ious)), "noisy_volumes": len(noisy), "exact_groups": len(exact)}


def group_record(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where CNN rows lose to the classical methods, per test group (rows that record ``group_iou``):
    how many group scores found next to nothing (IoU under ``FOUND_NOTHING``), for CNN rows (every seed)
    and for the baselines; and of the CNN group scores that found something, how many beat the best
    baseline on that group. None where the rows do not record their groups."""
    cnn = [r["group_iou"] for r in rows if r.get("architecture") in ARCHITECTURES and "group_iou" in r]
    base = [r["group_iou"] for r in rows if r["method"] in BASELINES and "group_iou" in r]
    if not cnn or not base or len({len(g) for g in cnn + base}) != 1:
        return None
    cnn_iou, base_iou = np.array(cnn, float), np.array(base, float)
    best_base = base_iou.max(axis=0)  # per group
    found = cnn_iou >= FOUND_NOTHING
    return {
        "groups": int(cnn_iou.shape[1]),
        "cnn_scores": int(cnn_iou.size),
        "cnn_missed": int((~found).sum()),
        "cnn_missed_groups": int((~found).any(axis=0).sum()),
        "base_scores": int(base_iou.size),
        "base_missed": int((base_iou < FOUND_NOTHING).sum()),
        "cnn_found": int(found.sum()),
        "cnn_found_beat_base": int((found & (cnn_iou > best_base)).sum()),
    }


def _group_sentence(g: dict[str, Any]) -> str:
    return (
        f"Per test group ({g['groups']} groups): a CNN found next to nothing (IoU under {FOUND_NOTHING}) in "
        f"{g['cnn_missed']} of its {g['cnn_scores']} group scores (every CNN row and seed), in "
        f"{g['cnn_missed_groups']} of the {g['groups']} groups; the classical methods in {g['base_missed']} "
        f"of {g['base_scores']}. Where a CNN found dendrite, it beat the best classical method on that "
        f"group in {g['cnn_found_beat_base']} of {g['cnn_found']} scores. The classical methods fit each "
        "test volume itself and cannot miss a whole group; a CNN carries what it learned, and at this "
        "budget that does not reach every group: its mean loses whole groups, not boundaries."
    )


def _behind_classical(summary: dict[str, Summary], rows: list[dict[str, Any]]) -> list[str]:
    """Why some CNN rows fall behind the best classical method: which rows, whether each is a fine-tune at
    the fixed settings that made its model worse, and where they lose whole test groups."""
    cnn = [s for s in summary.values() if s.method.rpartition("_")[0] in ARCHITECTURES]
    base = [s for s in summary.values() if s.method in BASELINES]
    best_iou, best_bde = max(base, key=lambda s: s.mean["iou"]), min(base, key=_bde)
    behind = [s for s in cnn if s.mean["iou"] <= best_iou.mean["iou"] or _bde(s) >= _bde(best_bde)]
    out = []
    if behind:
        listed = ", ".join(
            f"{s.method} (IoU {s.mean['iou']:.4f}, BDE {s.mean['bde']:.2f} px)" for s in behind
        )

        def hurt(s: Summary) -> bool:
            arch, _, kind = s.method.rpartition("_")
            noisy = summary.get(f"{arch}_noisy")
            return kind == "fixed" and noisy is not None and s.mean["iou"] < noisy.mean["iou"]

        cause = (
            " Each is a fine-tune at the fixed settings that left its model worse than before it (below)."
            if all(hurt(s) for s in behind)
            else ""
        )
        out.append(
            f"Behind the best classical method (IoU {best_iou.mean['iou']:.4f}, {best_iou.method}; BDE "
            f"{best_bde.mean['bde']:.2f} px, {best_bde.method}): {listed}.{cause}"
        )
    groups = group_record(rows)
    if groups and groups["cnn_missed"]:
        out.append(_group_sentence(groups))
    return out


def _searched(steps: list[dict[str, Any]], arch: str) -> list[dict[str, Any]]:
    """The search steps of one architecture (a step per seed)."""
    return [s for s in steps if s.get("kind") == "searched" and s["rows"][0]["architecture"] == arch]


def diagnoses(
    summary: dict[str, Summary],
    steps: list[dict[str, Any]],
    budget: Any,
    labels: dict[str, Any] | None = None,
) -> list[str]:
    """What the run's own records say about its departures from the paper: sentences with their numbers.

    ``labels``: :func:`noisy_label_record` of the run's dataset, where known."""
    out: list[str] = []
    first = _cnn_above_classical(summary)
    if first and first[1] is False:
        out += _behind_classical(summary, [r for s in steps for r in s.get("rows", [])])
    hurt = len(out)
    for arch in ARCHITECTURES:
        noisy, fixed = summary.get(f"{arch}_noisy"), summary.get(f"{arch}_fixed")
        if noisy and fixed and fixed.mean["iou"] < noisy.mean["iou"]:
            chosen = [s["finetune"]["params"]["lr"] for s in _searched(steps, arch)]
            lrs = (
                f"; its searches chose step-2 learning rates of {min(chosen):.2g} to {max(chosen):.2g}"
                if chosen
                else ""
            )
            fixed_lr = budget.fixed[arch].finetune_lr
            out.append(
                f"{PAPER_NAMES[arch]}: fine-tuning on the exact labels at the fixed settings "
                f"(lr {fixed_lr:g}, {budget.finetune_epochs} epochs) made it worse than no fine-tuning (IoU "
                f"{fixed.mean['iou']:.4f} vs {noisy.mean['iou']:.4f}){lrs}. A search that beats the fixed "
                "rows may owe that to this step alone."
            )
    if len(out) > hurt and labels:  # fine-tunes that hurt
        reading = (
            " Labels this close teach step 1 nearly what step 2 would, from more varied scans: fine-tuning "
            "on the few exact groups can lose more in variety than it gains in exactness."
            if labels["iou"] >= CLOSE_LABELS
            else ""
        )
        out.append(
            f"The noisy training labels agree with the exact ones at IoU {labels['iou']:.2f} on average "
            f"({labels['noisy_volumes']} noisy training volumes, {labels['exact_groups']} exact training "
            f"groups); the paper's came from an earlier 2D network.{reading}"
        )
    for arch in ARCHITECTURES:
        searched = _searched(steps, arch)
        kept = sum(bool(s["finetune"].get("kept_parent")) for s in searched)
        if kept:
            out.append(
                f"{PAPER_NAMES[arch]}, searched: in {kept} of {len(searched)} run(s) no step-2 trial beat "
                "the step-1 model on the exact validation groups, and the step-1 model stayed (not "
                "fine-tuning is one of the search's choices)."
            )
    wide = [s for s in summary.values() if s.n > 1 and s.sd["iou"] > 0.05]
    if wide:
        worst = max(wide, key=lambda s: s.sd["iou"])
        out.append(
            f"The spread over seeds is wide ({len(wide)} rows above 0.05 IoU, widest {worst.method} "
            f"{worst.sd['iou']:.3f}): at {budget.steps_per_epoch} steps per epoch and {budget.epochs} "
            "epochs each model sees little training, and differences smaller than the spread are not "
            "findings. A larger budget (or more seeds) is the remedy, not a different comparison."
        )
    return out


# ------------------------------------------------------------------ blocks
def _table2(summary: dict[str, Summary]) -> tuple[list[str], list[list[str]]]:
    head = [
        "method",
        "HPO",
        "FT",
        "seeds",
        "accuracy %",
        "IoU %",
        "BF1 %",
        "BDE px",
        "seconds",
        "paper: acc / IoU / BF1 / BDE",
    ]
    rows = []
    for s in summary.values():
        paper = _paper_row(s.method)
        rows.append(
            [
                s.method,
                s.hpo,
                s.finetune,
                str(s.n),
                _pm(s, "accuracy", 100),
                _pm(s, "iou", 100),
                _pm(s, "bf1", 100),
                _pm(s, "bde"),
                f"{s.mean['seconds']:.0f}",
                " / ".join(f"{v:g}" for v in paper) if paper else "",
            ]
        )
    rows.append(
        [
            "2D SegNet (paper only; unet2d_noisy stands in)",
            "no",
            "no",
            "",
            "",
            "",
            "",
            "",
            "",
            " / ".join(f"{v:g}" for v in PAPER_TABLE2[("2D SegNet", "no HPO/FT")]),
        ]
    )
    return head, rows


def _table1(steps: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = [
        "architecture",
        "seed",
        "patch",
        "step 1 lr",
        "step 1 epochs (trials + winner)",
        "step 1 augment",
        "step 2 lr",
        "step 2 epochs (trials + winner)",
        "step 2 augment",
        "batch",
        "trials (1 / 2)",
    ]
    rows = []
    for step in steps:
        if step.get("kind") != "searched":
            continue
        pre, ft, arch = step["pretrain"], step["finetune"], step["rows"][0]["architecture"]
        p, f = pre["params"], ft["params"]
        depth = 1 if arch == "unet2d" else 4
        rows.append(
            [
                arch,
                str(step["rows"][0]["seed"]),
                f"{p.get('patch_width')}x{p.get('patch_width')}x{depth}",
                f"{p.get('lr', math.nan):.3g}",
                f"{pre['search_epochs']} + {pre['continued_epochs']} (winner's {p.get('epochs')})",
                str(p.get("augment")),
                f"{f.get('lr', math.nan):.3g}" + (" (step 1 kept)" if ft.get("kept_parent") else ""),
                f"{ft['search_epochs']} + {ft['continued_epochs']} (winner's {f.get('epochs')})",
                str(f.get("augment")),
                str(p.get("batch")),
                f"{pre['trials']} / {ft['trials']}",
            ]
        )
    for arch in ARCHITECTURES:
        patch, lr1, e1, lr2, e2, batch = PAPER_TABLE1[arch]
        rows.append(
            [
                f"{arch} (paper)",
                "",
                patch,
                f"{lr1:.3g}",
                str(e1),
                "",
                f"{lr2:.3g}",
                str(e2),
                "",
                str(batch),
                "",
            ]
        )
    return head, rows


def _blocks(
    out: Path, steps: list[dict[str, Any]], budget: str, seeds: int, versions: dict[str, str]
) -> list:
    rows = [r for s in steps for r in s.get("rows", [])]
    summary = summarise(rows)
    b = study_budget(budget)
    figures = next((s["files"] for s in steps if s.get("kind") == "figures"), [])
    blocks: list[tuple] = [
        ("h1", "Reproducing James et al. (2022) on synthetic XCT"),
        (
            "p",
            f"Budget {budget}: dataset preset {b.preset}, {seeds} seed(s) per CNN row, "
            f"{b.steps_per_epoch} steps per epoch. Fixed settings train {b.pretrain_epochs} epochs on the "
            f"noisy labels (step 1), then {b.finetune_epochs} on the exact ones (step 2). The searched rows "
            "train exactly as many epochs per step, every trial's epochs counted (pruned ones included): "
            f"about {b.search_share:.0%} of each step goes to the search's trials (TPE sampler, ASHA "
            "pruning), the rest to training the winner on from its best epoch with its settings (kept only "
            "where validation says it helped). Scores are on the exact test groups only, per slice, "
            "averaged; ± is the standard deviation over seeds. A CNN's labels are its own (p > 0.5: the "
            "paper's argmax, and the rule by which validation, and so the search, judges).",
        ),
        ("h2", "Table 2: test scores, ours beside the paper's"),
        ("table", *_table2(summary)),
        (
            "p",
            "Rows: `<arch>_noisy` trained on the noisy labels only at fixed settings (the paper's "
            "untuned rows), `<arch>_fixed` the same model fine-tuned on the exact labels at fixed "
            "settings (an ablation the paper has not: fine-tuning without the search), "
            "`<arch>_searched` the two-step search. The classical baselines fit on each test volume "
            "itself (the pixel classifier, forest, on the exact training groups). Our data are "
            "synthetic and smaller than the paper's, so the absolute numbers differ; the ordering is "
            "what we test.",
        ),
        ("h2", "The paper's claims, in our run"),
    ]
    for text, supported, numbers in claims(summary):
        verdict = {
            True: "Supported.",
            False: "Not supported.",
            None: "Ahead, but with one seed there is no spread to weigh the difference against.",
        }
        blocks.append(("p", f"**{text}** {verdict[supported]} {numbers}"))
    data = next((s for s in steps if s.get("kind") == "dataset"), {})
    labels = noisy_label_record(out / data["manifest"]) if data.get("manifest") else None
    found = diagnoses(summary, steps, b, labels)
    if found:
        blocks.append(("h2", "Why, where the run differs from the paper"))
        blocks += [("p", text) for text in found]
    blocks += [
        ("h2", "Table 1: the settings each search chose, beside the paper's"),
        ("table", *_table1(steps)),
        ("h2", "Figures"),
    ]
    captions = {
        "overlays.png": "Each method on one test slice, in the paper's colours (its Figures 1 and 4).",
        "xz_sections.png": "x-z sections: how smooth each method is across slices (Figures 5-6).",
        "mesh.png": "The best 3D model's segmentation of a test scan, meshed (Figure 7).",
        "learning_curves.png": "Validation IoU against epochs trained: fixed settings, and the "
        "search's trials then its winner, on one epoch axis.",
        "search_history.png": "Each search's trials: score per trial, best so far.",
        "importances.png": "Which settings mattered in each search (Optuna fANOVA).",
    }
    for f in figures:
        blocks.append(("img", out / f, captions.get(Path(f).name, Path(f).name)))
    blocks += [("h2", "Steps: time, hardware, command"), ("table", *_steps_table(steps))]
    blocks += [
        ("p", f"Command: `{steps[0]['command']}`" if steps else "No step ran."),
        ("p", "Packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."),
    ]
    return blocks


def _steps_table(steps: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    head = ["step", "seconds", "finished", "hardware"]
    rows = []
    for s in steps:
        hw = s.get("hardware", {})
        cpu = f"{hw.get('processor', '?')}, {hw.get('cpus', '?')} CPUs"
        where = hw.get("gpu") or f"{cpu}, {hw.get('torch_threads', '?')} threads"
        rows.append([s["step"], f"{s['seconds']:.1f}", s.get("finished", ""), where])
    total = sum(s["seconds"] for s in steps)
    rows.append(["all", f"{total:.1f}", "", ""])
    return head, rows


# ------------------------------------------------------------------ rendering
def _md(blocks: list, out: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            head, rows = block[1], block[2]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1].relative_to(out).as_posix()})", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape text for HTML, keeping the two marks the blocks use: **bold** and `code`."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


IMAGES_SCRIPT = (
    "window.addEventListener('load', function () {"
    " var imgs = Array.prototype.slice.call(document.images);"
    " document.body.setAttribute('data-images', imgs.length);"
    " document.body.setAttribute('data-images-shown',"
    " imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length); });"
)


def _html(blocks: list) -> str:
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode()
            caption = _inline(block[2])
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
        "td,th{border:1px solid #bbb;padding:3px 6px;text-align:left}th{background:#eee}"
        "img{max-width:100%}figure{margin:1.5em 0}figcaption{font-style:italic}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>dendriteseg: reproducing James et al. (2022)</title><style>{style}</style>"
        f"<script>{IMAGES_SCRIPT}</script></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_table2(path: Path, rows: list[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE2_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in TABLE2_COLUMNS}
        )
    write_text_atomic(path, buffer.getvalue())
    return path


def write_report(
    out: Path, steps: list[dict[str, Any]], *, budget: str, seeds: int, versions: dict[str, str]
) -> list[Path]:
    """Write ``table2.csv``, ``report.md`` and ``report.html`` into ``out``; returns them."""
    rows = [r for s in steps for r in s.get("rows", [])]
    blocks = _blocks(out, steps, budget, seeds, versions)
    table = write_table2(out / "table2.csv", rows)
    md, page = out / "report.md", out / "report.html"
    write_text_atomic(md, _md(blocks, out))
    write_text_atomic(page, _html(blocks))
    return [table, md, page]
