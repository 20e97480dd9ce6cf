"""Mining at scale: the batched cosine k-NN over a 1,000,000 x 256 pool read from its embedding cache.

    .venv/bin/python benchmarks/mining_knn.py --threads 2 --out benchmarks/results/mining_knn_cpu_2cores.json

The pool embeddings are written once as an .npy file (as the deft_embed rule caches them per model)
and memory-mapped, so the timed call reads them from the page cache, chunk by chunk. Two figures per
query count: ``cosine_topk`` alone, and the whole ``mining.mine`` call the workflow makes (row keys,
history and exclusion masks over the 1M-row pool frame, the per-target k-NN, de-duplication,
quotas). The pool has a planted neighbourhood around each query so the similarity floor keeps rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, nargs="+", default=[120, 1000])
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


ARGS = parse_args()
# BLAS reads its thread count when numpy is imported.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from aoideft.deft import mining  # noqa: E402


def make_pool(path: Path, rows: int, dim: int, rng: np.random.Generator) -> None:
    """Random unit-ish float32 rows written in blocks (the generator never holds 1 GB twice)."""
    pool = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, 100_000):
        stop = min(rows, start + 100_000)
        pool[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    pool.flush()
    del pool


def main() -> None:
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="aoi-mining-bench-"))
    pool_path = root / "pool.npy"
    started = time.perf_counter()
    make_pool(pool_path, ARGS.pool, ARGS.dim, rng)
    generate_s = time.perf_counter() - started
    pool_emb = np.load(pool_path, mmap_mode="r", allow_pickle=False)
    pool = pd.DataFrame({"input_path": "pool/board/test", "golden_path": "pool/board/golden",
                         "label": np.where(rng.random(ARGS.pool) < 0.1, "SHIFT", "PASS"),
                         "object_name": [f"p{i:07d}" for i in range(ARGS.pool)]})
    history = {"1": [f"pool/board/test/p{i:07d}" for i in range(0, ARGS.pool, 997)]}  # ~1000 rows mined before
    results = []
    for n_queries in ARGS.queries:
        # each query is a noisy copy of a pool row, so some pool rows clear the 0.9 floor
        anchors = rng.choice(ARGS.pool, n_queries, replace=False)
        queries = np.asarray(pool_emb[np.sort(anchors)]) + 0.2 * rng.standard_normal((n_queries, ARGS.dim), dtype=np.float32)
        targets = pd.DataFrame({"input_path": "kpi/test", "golden_path": "kpi/golden", "label": "PASS",
                                "object_name": [f"k{i}" for i in range(n_queries)]})
        knn, whole = [], []
        for _ in range(ARGS.repeats):
            t0 = time.perf_counter()
            mining.cosine_topk(queries, pool_emb, ARGS.top_k)
            knn.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = mining.mine(targets, queries, pool, pool_emb, top_k_per_target=ARGS.top_k, min_similarity=0.9,
                                 history=history, iteration=2)
            whole.append(time.perf_counter() - t0)
        results.append({"queries": n_queries, "cosine_topk_s": sorted(knn), "mine_s": sorted(whole),
                        "mined_rows": len(result.rows)})
        print(f"{n_queries} queries x {ARGS.pool} x {ARGS.dim}: cosine_topk median {sorted(knn)[len(knn) // 2]:.2f} s, "
              f"mine() median {sorted(whole)[len(whole) // 2]:.2f} s, {len(result.rows)} rows mined", flush=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "pool_rows": ARGS.pool, "dim": ARGS.dim, "top_k": ARGS.top_k, "threads": ARGS.threads,
        "pool_file_gb": pool_path.stat().st_size / 1e9, "generate_s": generate_s, "peak_rss_mb": peak_rss_mb,
        "machine": f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
                   f"python {sys.version.split()[0]}",
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if ARGS.out:
        ARGS.out.write_text(json.dumps(report, indent=2) + "\n")
    pool_path.unlink()
    root.rmdir()


if __name__ == "__main__":
    main()
