"""The Lloyd refinement of ``sample.size: all`` on a chunked matrix (``kmeans.chunked_lloyd``): one
read of the matrix per iteration, and bits that depend on neither the scheduler nor the chunking
where the sums are exact. (Its agreement with the in-memory ``lloyd`` and its empty classes are
tested in test_kmeans.py.)"""

import threading

import dask
import dask.array as da
import numpy as np
import pytest

from pipeline.algo.kmeans import fit_kmeans
from pipeline.algo.lloyd import chunked_lloyd


def _landscape(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) float32 pixels of whole numbers in 0..10 000 (as scaled uint16 reflectances) around 6
    overlapping centres (Lloyd takes a few iterations there), and a start off the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(1_500, 8_500, (6, 4))
    x = np.clip(np.rint(centres[rng.integers(0, 6, n)] + rng.normal(0, 1_000, (n, 4))), 0, 10_000).astype(np.float32)
    return x, centres + rng.normal(0, 600, centres.shape)


def _counted(x: np.ndarray, rows: int) -> tuple[da.Array, list[int]]:
    """``x`` as a dask matrix of ``rows``-row chunks, each made by a task that counts its runs:
    what reading a chunk of the mosaic costs."""
    reads, lock = [], threading.Lock()

    def read(start: int) -> np.ndarray:
        with lock:
            reads.append(start)
        return x[start : start + rows]

    parts = [
        da.from_delayed(dask.delayed(read)(start), shape=(min(rows, len(x) - start), x.shape[1]), dtype=np.float32)
        for start in range(0, len(x), rows)
    ]
    return da.concatenate(parts), reads


def test_the_chunked_lloyd_reads_each_chunk_once_per_iteration():
    x, start = _landscape(50_000)
    matrix, reads = _counted(x, 6_000)  # 9 chunks
    with dask.config.set(scheduler="threads"):
        _, iterations = chunked_lloyd(matrix, start, max_iter=100, tol=0.0)
    assert iterations > 2
    assert len(reads) == iterations * matrix.numblocks[0]
    assert sorted(set(reads)) == list(range(0, len(x), 6_000))


def test_whole_number_pixels_give_the_same_bits_in_any_chunking_and_on_any_scheduler():
    # Per-class sums of whole numbers up to 10 000 over 200 000 pixels pass 2^24 by far: exact in
    # float64 (as the chunks' totals are added), not in float32. Exact sums leave nothing to the
    # chunking, so any difference is the algorithm's.
    x, start = _landscape(200_000, seed=1)
    results = []
    for rows in (200_000, 47_001, 8_192):
        for scheduler in ("threads", "synchronous"):
            with dask.config.set(scheduler=scheduler):
                results.append(chunked_lloyd(da.from_array(x, chunks=(rows, -1)), start, max_iter=100, tol=0.0))
    first, iterations = results[0]
    assert iterations > 2
    for centroids, n in results[1:]:
        np.testing.assert_array_equal(centroids, first)
        assert n == iterations


@pytest.mark.parametrize("rows", [9_000, 40_000])
def test_the_fit_on_a_chunked_matrix_is_the_same_on_any_scheduler(rows):
    x, _ = _landscape(80_000, seed=2)
    sample = x[np.random.default_rng(3).permutation(len(x))[:20_000]]
    fits = []
    for scheduler in ("threads", "synchronous"):
        with dask.config.set(scheduler=scheduler):
            fits.append(
                fit_kmeans(da.from_array(x, chunks=(rows, -1)), seeds_from=sample, k=6, n_init=3, max_iter=100, tol=1e-4, seed=0)
            )
    threads, synchronous = fits
    np.testing.assert_array_equal(threads.centroids, synchronous.centroids)
    assert (threads.n_iter, threads.inertia, threads.n_pixels) == (synchronous.n_iter, synchronous.inertia, len(x))
    # The refinement moved the sample's winner: its centroids are means over all the pixels.
    in_memory = fit_kmeans(sample, seeds_from=sample, k=6, n_init=3, max_iter=100, tol=1e-4, seed=0)
    assert not np.array_equal(threads.centroids, in_memory.centroids)
    assert threads.n_iter > in_memory.n_iter
