"""Whole-volume inference: speed against MONAI and against the CPU's floor, and peak memory.

All in one run, on this machine, with the shipped default model (or --model):

(a) ``segment`` vs MONAI ``sliding_window_inference`` called as a user
    would (fp32, overlap 0.25, Gaussian, the same model and tile), on a
    synthetic scan; throughput ratio and the fraction of voxels that agree.
(b) ``segment`` vs the model's own forward pass on one whole-plane tile
    (what tiling, blending, reading and writing cost).
(c) peak RSS and peak anonymous memory (``RssAnon``, sampled: what a
    memory limit counts) of ``dendriteseg segment`` on a 250 x 852 x 852
    float32 volume and on one twice as deep (each in a fresh process,
    streaming to Zarr); then the first again with torch's huge-page advice
    off (``THP_MEM_ALLOC_ENABLE=0``, see ``dendriteseg.heap``), side by side.
(d) the measured time for 852 x 852 x 250 against its floor: the model's
    FLOPs per voxel x voxels / the measured matmul peak of this CPU at the
    precision the run used (bf16 where the CPU has bf16 units, else fp32).
(e) fp32 vs bf16 agreement of the trained model's labels (bf16 on a small
    crop when the CPU has no bf16 units, where it is emulated and slow).
(f) with ``--profile``: where the time of ``segment`` goes on a
    ``--profile-shape`` volume (default 32 x 852 x 852, scale 1, the run's
    precision): PyTorch's profiler, self time per kind of operator (convolutions,
    normalisation, activations, up-sampling, the rest of the network) and
    outside the network (reading, windowing, blending, labelling), against
    the wall time.

    python benchmarks/inference.py [--model M] [--depth 250] [--skip-big] [--profile]
"""

from __future__ import annotations

import dendriteseg  # noqa: F401 - before torch, which reads its huge-page switch once (dendriteseg.heap)

# isort: split

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def matmul_peak(dtype: torch.dtype, n: int = 4096, reps: int = 5) -> float:
    """GFLOP/s of a large square matmul at the current thread count."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    start = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def flops_per_voxel(model: torch.nn.Module, tile: tuple[int, int, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, *tile)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / x.numel()


def test_scan(shape: tuple[int, int, int], seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    from dendriteseg.synth.scan import make_scan

    scan = make_scan(shape, preset="moderate", rng=seed)
    return scan["image"], scan["label"]


def run_monai(model: torch.nn.Module, image: np.ndarray, tile: tuple[int, int, int], window) -> tuple:
    from monai.inferers import sliding_window_inference

    lo, hi = window
    x = torch.from_numpy(((image.astype(np.float32) - lo) / (hi - lo))[None, None])
    start = time.perf_counter()
    with torch.no_grad():
        out = sliding_window_inference(x, tile, 1, model, overlap=0.25, mode="gaussian")
    seconds = time.perf_counter() - start
    labels = (out[0, 1] > out[0, 0]).numpy().astype(np.uint8)
    return labels, seconds


def anonymous_mb(pid: int) -> float:
    """The process's resident anonymous memory (MB; Linux ``RssAnon``): what a scheduler's memory
    limit counts, unlike the file pages of a memory-mapped input that RSS also holds. NaN elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child_peak_rss(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Run a command (with ``env`` added to this environment); return (seconds, its own peak RSS in MB
    from wait4, its peak anonymous memory in MB sampled every 50 ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})})
    peak_anon = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # this child's own usage, once it ends
        if pid:
            break
        anon = anonymous_mb(proc.pid)
        peak_anon = max(peak_anon, anon) if anon == anon else peak_anon
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, peak_anon or float("nan")


def segment_command(src: Path, out: Path, *options: str) -> list[str]:
    """``dendriteseg segment SRC -o OUT --scale 1 OPTIONS`` run by this Python (in a process of its own)."""
    return [
        sys.executable,
        "-m",
        "dendriteseg",
        "segment",
        str(src),
        "-o",
        str(out),
        "--scale",
        "1",
        *options,
    ]


def make_big_volume(path: Path, depth: int, plane: int, seed: int = 0) -> None:
    """A float32 .npy volume written slab by slab: a smooth phantom plus noise (content matters little)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.standard_normal((16, plane, plane)).astype(np.float32), (1, 6, 6))
    base = (base > 0).astype(np.float32) * 0.3 + 0.5
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(depth, plane, plane))
    for z in range(0, depth, 16):
        n = min(16, depth - z)
        out[z : z + n] = base[:n] + rng.normal(0, 0.05, (n, plane, plane)).astype(np.float32)
    out.flush()
    del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--depth", type=int, default=250, help="slices of the big volume")
    parser.add_argument("--plane", type=int, default=852)
    parser.add_argument("--scan", default="32,256,256", help="shape of the MONAI comparison scan")
    parser.add_argument("--skip-big", action="store_true", help="skip (c) and (d)")
    parser.add_argument("--only-big", action="store_true", help="run only (c) and (d)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--profile", action="store_true", help="(f): where segment's time goes")
    parser.add_argument("--profile-shape", default="32,852,852")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.depth, args.plane, args.scan, args.profile_shape = 8, 96, "8,64,64", "8,64,64"
        args.profile = True

    from dendriteseg.data.volumes import normalisation_window
    from dendriteseg.device import cpu_has_bf16
    from dendriteseg.infer import load_predictor, segment
    from dendriteseg.infer.predictor import resolve_model_path
    from dendriteseg.models.files import load_model

    threads = torch.get_num_threads()
    model_path = resolve_model_path(args.model)
    model, info = load_model(model_path)
    print(
        f"model {model_path.name}: {info.architecture} {info.arguments}; torch {torch.__version__}, "
        f"{threads} threads, CPU bf16 units: {cpu_has_bf16()}"
    )
    results: dict = {"model": model_path.name, "threads": threads}

    tile = (load_predictor(model_path, device="cpu").tile_depth or 1, 256, 256)
    if not args.only_big:
        # (a) segment vs MONAI ------------------------------------------------------------
        shape = tuple(int(s) for s in args.scan.split(","))
        image, label = test_scan(shape)
        window = normalisation_window(image)
        predictor = load_predictor(model_path, device="cpu", compile=False)  # loaded once, as in a series
        ours = segment(image, predictor, scale=1)
        ours = segment(image, predictor, scale=1)  # second run: warm caches
        tile = ours.tile
        monai_labels, monai_s = run_monai(model, image, tile, window)
        agree = float((monai_labels == ours.labels).mean())
        ratio = monai_s / ours.seconds
        print(
            f"(a) {shape} scan, tile {tile}: segment {ours.seconds:.2f} s "
            f"({ours.voxels_per_second / 1e6:.3f} Mvox/s), "
            f"MONAI sliding_window_inference {monai_s:.2f} s -> {ratio:.1f}x; "
            f"voxels agreeing {100 * agree:.3f} %"
        )
        results["a"] = {"segment_s": ours.seconds, "monai_s": monai_s, "ratio": ratio, "agree": agree}
        if not args.smoke:  # compiling alone takes half a minute
            compiled = load_predictor(model_path, device="cpu", compile=True)
            start = time.perf_counter()
            segment(image, compiled, scale=1)  # the first volume pays the compile time
            first_s = time.perf_counter() - start
            warm = segment(image, compiled, scale=1)
            agree_c = float((warm.labels == ours.labels).mean())
            print(
                "(a) the same with torch.compile (as in a series, or any volume >= 64 M voxels): "
                f"first volume {first_s:.1f} s (compiling), then {warm.seconds:.2f} s "
                f"({warm.voxels_per_second / 1e6:.3f} Mvox/s) "
                f"-> {monai_s / warm.seconds:.1f}x MONAI; agrees with eager on {100 * agree_c:.3f} %"
            )
            results["a_compiled"] = {
                "first_s": first_s,
                "segment_s": warm.seconds,
                "ratio": monai_s / warm.seconds,
            }

        # (b) tiling overhead vs the bare forward pass on one tile ------------------------------
        tile_in = np.random.default_rng(0).random((1, *tile), dtype=np.float32)
        predictor(tile_in)
        start = time.perf_counter()
        reps = 3
        for _ in range(reps):
            predictor(tile_in)
        forward_vps = tile_in.size * reps / (time.perf_counter() - start)
        print(
            f"(b) forward pass alone on one {tile} tile: {forward_vps / 1e6:.3f} Mvox/s; segment achieved "
            f"{ours.voxels_per_second / 1e6:.3f} Mvox/s = {ours.voxels_per_second / forward_vps:.2f} of it "
            f"(tile work ratio {ours.work_ratio:.3f})"
        )
        results["b"] = {"forward_vps": forward_vps, "segment_vps": ours.voxels_per_second}

        # (e) fp32 vs bf16 on the trained model ------------------------------------------------
        side = 32 if args.smoke else 128
        crop = image if cpu_has_bf16() and not args.smoke else image[: tile[0], :side, :side]
        fp32 = segment(crop, model_path, device="cpu", precision="fp32", window=window, scale=1)
        start = time.perf_counter()
        bf16 = segment(crop, model_path, device="cpu", precision="bf16", window=window, scale=1)
        bf16_s = time.perf_counter() - start
        bf_agree = float((fp32.labels == bf16.labels).mean())
        print(
            f"(e) bf16 vs fp32 on {crop.shape}: {100 * bf_agree:.3f} % of voxels agree; bf16 "
            f"{crop.size / bf16_s / 1e6:.4f} Mvox/s vs fp32 {fp32.voxels_per_second / 1e6:.3f} Mvox/s"
        )
        results["e"] = {"agree": bf_agree, "bf16_vps": crop.size / bf16_s, "fp32_vps": fp32.voxels_per_second}

    # (c, d) big volumes: peak RSS and full-volume time --------------------------------------
    if not args.skip_big:
        size = 1024 if args.smoke else 4096  # the smoke run's peak is only a check that it runs
        peak32 = matmul_peak(torch.float32, size)
        plane = 64 if args.smoke else 256
        fpv = flops_per_voxel(model, (tile[0], plane, plane))  # the network as trained (eager ops counted)
        work = Path(args.work or tempfile.mkdtemp(prefix="dseg-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        model_option = ["--model", str(model_path)] if args.model else []
        rows = []
        for depth in (args.depth, 2 * args.depth):
            src = work / f"vol_{depth}.npy"
            if not src.exists():
                make_big_volume(src, depth, args.plane)
            out = work / f"seg_{depth}.zarr"
            seconds, rss, anon = child_peak_rss(segment_command(src, out, "--device", "cpu", *model_option))
            voxels = depth * args.plane**2
            rows.append((depth, seconds, rss, anon, voxels))
            print(
                f"(c) {depth} x {args.plane} x {args.plane} float32 ({voxels * 4 / 2**30:.2f} GiB): "
                f"{seconds:.1f} s, peak RSS {rss:.0f} MB, peak anonymous {anon:.0f} MB",
                flush=True,
            )
        # the first volume again without torch's huge-page advice (dendriteseg.heap): 4 KB page faults
        depth = args.depth
        cmd = segment_command(
            work / f"vol_{depth}.npy", work / f"seg_{depth}_4k.zarr", "--device", "cpu", *model_option
        )
        plain_s, plain_rss, plain_anon = child_peak_rss(cmd, {"THP_MEM_ALLOC_ENABLE": "0"})
        print(
            f"(c) {depth} x {args.plane} x {args.plane} again with THP_MEM_ALLOC_ENABLE=0 (torch's huge-page "
            f"advice off): {plain_s:.1f} s, peak RSS {plain_rss:.0f} MB, peak anonymous {plain_anon:.0f} MB; "
            f"with it x{plain_s / rows[0][1]:.2f} faster, peak anonymous "
            f"{100 * (rows[0][3] / plain_anon - 1):+.1f} %",
            flush=True,
        )
        growth = rows[1][2] / rows[0][2] - 1
        anon_growth = rows[1][3] / rows[0][3] - 1
        print(
            f"(c) for twice the depth: peak RSS grows {100 * growth:.1f} %, peak anonymous memory "
            f"{100 * anon_growth:.1f} % (RSS counts the input's memory-mapped pages; anonymous is "
            "what a memory limit kills for)"
        )
        depth, seconds, rss, anon, voxels = rows[0]
        # the floor at the precision the run used: bf16 where the CPU has bf16 units ("auto"), else fp32
        used = "bf16" if cpu_has_bf16() else "fp32"
        peak = matmul_peak(torch.bfloat16, size) if used == "bf16" else peak32
        floor32 = fpv * voxels / (peak32 * 1e9)
        floor = fpv * voxels / (peak * 1e9)
        print(
            f"(d) {args.plane} x {args.plane} x {depth}: {seconds:.1f} s end to end (process start, "
            f"model load, reading, writing); the run's precision {used}: floor {floor:.1f} s = "
            f"{fpv / 1e3:.1f} kFLOP/voxel x {voxels / 1e6:.2f} M voxels / {peak:.0f} GFLOP/s {used} "
            f"matmul peak; ratio {seconds / floor:.2f} "
            f"(fp32 floor {floor32:.1f} s, ratio {seconds / floor32:.2f})"
        )
        results["c"] = [
            {"depth": d, "seconds": s, "peak_rss_mb": r, "peak_anonymous_mb": a} for d, s, r, a, _ in rows
        ]
        results["c_4k_pages"] = {
            "seconds": plain_s,
            "peak_rss_mb": plain_rss,
            "peak_anonymous_mb": plain_anon,
        }
        results["d"] = {
            "seconds": seconds,
            "precision": used,
            "floor_s": floor,
            "ratio": seconds / floor,
            "fp32_floor_s": floor32,
            "kflop_per_voxel": fpv / 1e3,
            "fp32_peak_gflops": peak32,
            "peak_gflops": peak,
        }
    if args.profile:
        shape = tuple(int(s) for s in args.profile_shape.split(","))
        results["f"] = profile_segment(model_path, shape)
    print(json.dumps(results))


KINDS = {  # operator name fragments -> kind (the first that matches)
    "convolution": ("conv",),
    "normalisation": ("norm",),
    "activation": ("relu", "clamp", "gelu", "silu", "sigmoid", "elu"),
    "up-sampling": ("upsample", "interpolate"),
}


def profile_segment(model_path: Path, shape: tuple[int, int, int]) -> dict:
    """(f): ``segment`` at scale 1 on a synthetic ``shape`` volume under PyTorch's profiler; self CPU
    time per kind of operator, the rest of the wall time outside the network."""
    from torch.profiler import ProfilerActivity, profile

    from dendriteseg.infer import load_predictor, segment

    image, _ = test_scan(shape)
    predictor = load_predictor(model_path, device="cpu", compile=False)
    segment(image[: predictor.tile_depth or 1], predictor, scale=1)  # kernels set up outside the count
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()  # the profiler's own start and stop left out
        segment(image, predictor, scale=1)
        wall = time.perf_counter() - start
    seconds: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key.lower()
        kind = next((k for k, parts in KINDS.items() if any(p in name for p in parts)), "other network")
        seconds[kind] = seconds.get(kind, 0.0) + event.self_cpu_time_total / 1e6
    seconds["outside the network"] = max(wall - sum(seconds.values()), 0.0)
    print(f"(f) where segment's {wall:.1f} s go on {shape} (scale 1, profiled):")
    for kind, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:<22} {s:7.2f} s  {100 * s / wall:5.1f} %")
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    print("    top operators: " + ", ".join(f"{e.key} {e.self_cpu_time_total / 1e6:.2f} s" for e in top))
    return {"wall_s": wall, "seconds": seconds}


if __name__ == "__main__":
    main()
