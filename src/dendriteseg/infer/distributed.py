"""The same block-wise inference on a ``dask.distributed`` cluster.

The client measures the normalisation window and lays out the tile grid,
exactly as :func:`~dendriteseg.infer.segment` would; the volume is then cut
into blocks of whole z-chunks of the output Zarr array. Each task reads its
block plus the tile rows that reach into it (its halo) straight from the
input file, runs the rows through the model (loaded once per worker and
kept), and writes its labels into the temporary Zarr array; no two tasks
share a chunk. The client renames the array into place when every block is
done. Because a block sees the same tiles, batches and summation order as
the single-process run, its labels are identical to that run's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import InputError, require
from dendriteseg.infer.edge_rim import EdgeRim
from dendriteseg.infer.hysteresis import REACH, hysteresis_labels
from dendriteseg.infer.predictor import BinnedPredictor, flips, resolve_predictor, with_flips
from dendriteseg.infer.segment import (
    SegmentResult,
    check_volume,
    inside_region,
    plan_volume,
    predictor_at_scale,
    probe_predictor,
    window_for_volume,
)
from dendriteseg.infer.settings import DEFAULT_HYSTERESIS, InferenceSettings, settings_from
from dendriteseg.infer.stream import iter_logits
from dendriteseg.infer.tiling import Tiling
from dendriteseg.io import Volume, VolumeWriter, open_volume, parse_location
from dendriteseg.preprocess import FiniteVolume
from dendriteseg.sample_region import sample_region_for

_PREDICTORS: dict[tuple, Any] = {}  # per worker process: model loaded once


def parse_scheduler(address: str) -> tuple[str, Any]:
    """``local:N`` -> ("local", N); anything else is a scheduler address."""
    if address.startswith("local"):
        _, _, count = address.partition(":")
        try:
            workers = int(count or os.cpu_count() or 1)
        except ValueError:
            raise InputError(f"--dask {address}: expected local:N with N a number of workers") from None
        if workers < 1:
            raise InputError(f"--dask {address}: need at least one worker")
        return "local", workers
    return "remote", address


def _worker_threads(threads: int | None) -> int:
    if threads:
        return threads
    try:
        from distributed import get_worker

        worker = get_worker()
        return max(1, int(getattr(worker.state, "nthreads", 1)))
    except (ImportError, ValueError, AttributeError):
        return 1


def _worker_predictor(model: Any, predictor_options: dict[str, Any], scale: int) -> Any:
    """The block's predictor: a model file is loaded once per worker process and kept."""
    if not isinstance(model, (str, Path)):
        predictor = _predictor(model, predictor_options)
    else:
        key = (str(model), tuple(sorted(predictor_options.items())))
        if key not in _PREDICTORS:
            _PREDICTORS[key] = _predictor(model, predictor_options)
        predictor = _PREDICTORS[key]
    return BinnedPredictor(predictor, scale) if scale > 1 else predictor


def _predictor(model: Any, predictor_options: dict[str, Any]) -> Any:
    """The predictor the options say, flipped as their ``tta`` (decided once for the volume) says, as
    :func:`~dendriteseg.infer.segment` flips it."""
    options = dict(predictor_options)
    flipped = options.pop("tta")
    return with_flips(resolve_predictor(model, **options), flipped, 0)


def _segment_block(
    spec: str,
    model: Any,
    predictor_options: dict[str, Any],
    scale: int,
    tiling: Tiling,
    window: tuple[float, float],
    z_range: tuple[int, int],
    store: str,
    member: str | None,
    batch_size: int,
    threads: int | None,
    region: np.ndarray | None = None,
    hysteresis: float = DEFAULT_HYSTERESIS,
    edge_rim: bool = True,
) -> int:
    """Run one block on a worker; returns its dendrite voxel count (nothing outside ``region``; labels by
    ``hysteresis``, from the logits of the block and of ``REACH`` slices either side; with ``edge_rim``,
    no rim along ``region``'s edge)."""
    import torch
    import zarr

    torch.set_num_threads(_worker_threads(threads))
    predictor = _worker_predictor(model, predictor_options, scale)
    array = zarr.open_array(store, path=member, mode="r+") if member else zarr.open_array(store, mode="r+")
    count = 0
    with open_volume(spec) as vol:
        source = FiniteVolume(vol, window)  # NaN and infinities read as the window's ends, as in segment
        for z0, z1, labels in block_labels(
            source, predictor, tiling, window, z_range, region, hysteresis, batch_size, scale, edge_rim
        ):
            array[z0:z1] = labels
            count += int(labels.sum(dtype=np.int64))
    return count


def block_labels(
    source: Volume,
    predictor: Any,
    tiling: Tiling,
    window: tuple[float, float],
    z_range: tuple[int, int],
    region: np.ndarray | None,
    hysteresis: float,
    batch_size: int = 1,
    scale: int = 1,
    edge_rim: bool = True,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(z0, z1, labels)`` for the slices of ``z_range`` as a whole run labels them: from the logits of
    the block and of the ``REACH`` slices either side that vouch for its pieces (hysteresis), with
    ``edge_rim`` without a rim along ``region``'s edge (:mod:`.edge_rim`; ``scale``: the binning the
    predictor sees)."""
    c0, c1 = z_range
    reach = REACH if hysteresis > 0.5 else 0
    around = (max(c0 - reach, 0), min(c1 + reach, int(source.shape[0])))
    slabs = iter_logits(source, predictor, tiling, window, batch_size=batch_size, z_range=around)
    inside = ((z0, z1, inside_region(region, z0, z1, logits)) for z0, z1, logits in slabs)
    rim = EdgeRim(region if edge_rim else None, scale)
    for z0, z1, _, labels in hysteresis_labels(inside, hysteresis):
        a, b = max(z0, c0), min(z1, c1)
        if b > a:
            yield a, b, rim(a, labels[a - z0 : b - z0])


def _run_blocks(
    scheduler: str,
    task: tuple,
    blocks: list[tuple[int, int]],
    sink: tuple,
    shape: tuple[int, int, int],
    progress: Callable[[int, int], None] | None,
) -> int:
    """Run :func:`_segment_block` for every z-block on the cluster; returns the dendrite voxel count.

    ``task`` is (input, model, predictor options, binning, tiling, window); ``sink`` is
    (Zarr store, member, batch size, torch threads, sample region or None, hysteresis, edge rim rule).
    """
    from distributed import Client, LocalCluster, as_completed

    kind, target = parse_scheduler(scheduler)
    # distributed logs at INFO by default; follow the application's level instead
    logging.getLogger("distributed").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.INFO))
    cluster = (
        LocalCluster(n_workers=target, threads_per_worker=1, processes=True, dashboard_address=":0")
        if kind == "local"
        else None
    )
    store, member, batch_size, threads, region, hysteresis, edge_rim = sink
    try:
        with Client(cluster if cluster is not None else target) as client:
            futures = {
                client.submit(
                    _segment_block,
                    *task,
                    z_range,
                    store,
                    member,
                    batch_size,
                    threads,
                    region,
                    hysteresis,
                    edge_rim,
                    pure=False,
                ): z_range
                for z_range in blocks
            }
            total = int(np.prod(shape))
            done = dendrite = 0
            for future in as_completed(futures):
                dendrite += future.result()
                z0, z1 = futures[future]
                done += (z1 - z0) * shape[1] * shape[2]
                if progress:
                    progress(done, total)
    finally:
        if cluster is not None:
            cluster.close()
    return dendrite


def segment_dask(
    volume: str | Path,
    output: str | Path,
    model: Any = None,
    *,
    scheduler: str = "local:2",
    block_depth: int = 32,
    threads: int | None = None,
    settings: InferenceSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    **changes: Any,
) -> SegmentResult:
    """Segment a volume file into a Zarr array on a Dask cluster.

    Parameters
    ----------
    volume : path
        Any readable volume file (workers open it themselves, so it must be
        on storage they share).
    output : path
        A ``.zarr`` store (or ``store.zarr:/member``).
    scheduler : str
        ``local:N`` starts a local cluster of N single-threaded worker
        processes; otherwise the address of a running scheduler.
    block_depth : int
        Slices per task, a multiple of the output's z-chunk (8).
    threads : int, optional
        Torch threads per worker; default the worker's thread count (Dask
        gives each worker's tasks one thread unless told otherwise).
    settings, **changes
        As in :func:`~dendriteseg.infer.segment` (compile is off on workers).
    """
    require("distributed", "dask", "--dask")
    settings = settings_from(settings, changes)
    started = time.perf_counter()
    spec = str(volume)
    if parse_location(output, for_writing=True).format != "zarr":
        raise InputError(f"{output}: Dask output must be a .zarr store")
    if isinstance(model, (str, Path)) or model is None:  # absolute files: workers may run elsewhere
        from dendriteseg.infer.predictor import ensemble_members, resolve_model_path

        model = "+".join(str(resolve_model_path(m)) for m in ensemble_members(model) or [model])
    with open_volume(spec) as vol:
        check_volume(vol)
        voxel_size = vol.voxel_size
        region = sample_region_for(vol, settings.sample_mask)
        options = {**settings.predictor_options, "compile": False}
        single = resolve_predictor(model, **options)  # what a scale probe of part of it runs, as in segment
        predictor = with_flips(single, settings.tta, int(np.prod(vol.shape)))
        flipped = flips(predictor)  # decided here for the volume: the workers flip as this does
        predictor_options = {**options, "tta": flipped}
        window = settings.window or window_for_volume(vol, predictor, region)
        probe = probe_predictor(vol, single, predictor)
        scaled, choice = predictor_at_scale(vol, predictor, settings.scale, window, region, probe=probe)
        plan = plan_volume(vol, scaled, settings, window)
    scale = choice.scale if choice else int(settings.scale)  # "auto" chosen once, here
    shape, tiling, window = plan.shape, plan.tiling, plan.window
    writer = VolumeWriter(output, shape, np.uint8, voxel_size=voxel_size)
    try:
        chunk_z = writer.zarr_chunks[0]
        block = max(chunk_z, (block_depth // chunk_z) * chunk_z)
        store, member = writer.zarr_temp()
        blocks = [(z, min(z + block, shape[0])) for z in range(0, shape[0], block)]
        task = (spec, model, predictor_options, scale, tiling, window)
        mask = None if region is None else region.mask
        sink = (store, member, settings.batch_size, threads, mask, settings.hysteresis, settings.edge_rim)
        dendrite = _run_blocks(scheduler, task, blocks, sink, shape, progress)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return SegmentResult(
        shape=shape,
        seconds=time.perf_counter() - started,
        dendrite_fraction=dendrite / int(np.prod(shape)),
        tile=tiling.tile,
        work_ratio=tiling.work_ratio(),
        window=tuple(float(w) for w in window),
        output=writer.final,
        sample_region=region,
        scale=choice,
        blocks=len(blocks),
        flips=flipped,
    )
