"""Mining: pull labelled mining-pool rows into training, three ways.

- Neighbours (``mine``): pool rows that look like the weak KPI rows, by cosine k-NN on the current
  model's embeddings (TAO's mining).
- Hard examples (``hard_examples``): the pool rows the current model gets most wrong by its own
  scores, since the pool is labelled: defects it scores lowest, PASS rows it scores highest,
  measured from its validation threshold in logits.
- Random rows (``random_rows``): the control a sceptic asks for (engine ``random``).

TAO embeds targets and pool with SigLIP and keeps, per target, the top 5 pool rows with cosine
similarity >= 0.9, de-duplicated across targets and across iterations (``mining_history.json``).
We embed with the current ChangeNet-lite model instead, so the similarity floor is a parameter
(its scale differs from SigLIP's). The k-NN is chunked over queries and pool, so a 1,000,000 x 256
pool (an ``np.memmap`` is fine) needs memory for one chunk of similarities only.

Row identity is the row key (``input_path/object_name``) as written in the pool CSV; exclusion and
history keys must use the same convention (the raw CSV paths, before any ``pool/`` prefix).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aoideft import csvdata, fsutil
from aoideft.errors import InputError

YIELD_DROP_WARN_FRACTION = 0.5  # warn when this iteration mines < 50% of the previous one
MINED_FILE = "mined_rows.csv"
SUMMARY_FILE = "mining_summary.json"


@dataclass(frozen=True)
class MiningResult:
    rows: pd.DataFrame  # pool rows + similarity, target_key, target_label; best similarity first
    warnings: list[str]
    hard_stop: bool  # this iteration mined nothing (the workflow stops if SDG added nothing either)
    reason: str | None
    stats: dict
    iteration: int | None = None

    def summary(self) -> dict:
        return {"iteration": self.iteration, "mined": len(self.rows), "hard_stop": self.hard_stop,
                "reason": self.reason, "warnings": self.warnings, "stats": self.stats}


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero (similarity 0 to everything)."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, np.float32(1e-12))


def cosine_topk(
    queries: np.ndarray,
    pool: np.ndarray,
    k: int,
    batch_size: int = 8192,
    *,
    valid: np.ndarray | None = None,
    query_batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` pool rows by cosine similarity for every query: (indices, sims), best first.

    Shapes (Q, min(k, n_valid)). ``valid`` (bool per pool row) masks rows out without copying the
    pool. The pool is read once, chunk by chunk; memory is one (query_batch_size x batch_size)
    float32 block, one normalised pool chunk and the running (Q x k) top-k.
    """
    queries = np.asarray(queries)
    if queries.ndim != 2 or pool.ndim != 2 or queries.shape[1] != pool.shape[1]:
        raise ValueError(f"embeddings must be 2-D with equal widths, got {queries.shape} and {pool.shape}")
    if not np.isfinite(queries).all():
        raise ValueError("query embeddings contain NaN or inf")
    valid = np.ones(pool.shape[0], bool) if valid is None else np.asarray(valid, bool)
    k = int(min(k, valid.sum()))
    n_queries = queries.shape[0]
    best_idx = np.full((n_queries, max(k, 0)), -1, np.int64)
    best_sim = np.full((n_queries, max(k, 0)), -np.inf, np.float32)
    if k <= 0 or n_queries == 0:
        return best_idx, best_sim
    normalised_queries = _normalised(queries)
    for p0 in range(0, pool.shape[0], batch_size):
        chunk_valid = valid[p0 : p0 + batch_size]
        if not chunk_valid.any():
            continue
        chunk = np.asarray(pool[p0 : p0 + batch_size])
        if not np.isfinite(chunk).all():
            raise ValueError(f"pool embeddings rows {p0}..{p0 + len(chunk) - 1} contain NaN or inf")
        chunk = _normalised(chunk).T
        for q0 in range(0, n_queries, query_batch_size):
            rows = slice(q0, q0 + query_batch_size)
            sims = normalised_queries[rows] @ chunk
            sims[:, ~chunk_valid] = -np.inf
            chunk_idx, chunk_sim = _keep_top(np.broadcast_to(np.arange(p0, p0 + len(chunk_valid)), sims.shape), sims, k)
            best_idx[rows], best_sim[rows] = _keep_top(
                np.hstack([best_idx[rows], chunk_idx]), np.hstack([best_sim[rows], chunk_sim]), k)
    order = np.lexsort((best_idx, -best_sim), axis=1)  # best first, ties by pool index
    return np.take_along_axis(best_idx, order, axis=1), np.take_along_axis(best_sim, order, axis=1)


def _keep_top(indices: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if sims.shape[1] <= k:
        return indices, sims
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return np.take_along_axis(indices, part, axis=1), np.take_along_axis(sims, part, axis=1)


def mine(
    targets: pd.DataFrame,
    target_emb: np.ndarray,
    pool: pd.DataFrame,
    pool_emb: np.ndarray,
    *,
    top_k_per_target: int = 5,
    min_similarity: float = 0.9,
    history: dict | None = None,
    exclude_keys: Collection[str] = frozenset(),
    label_aware: bool = False,
    class_aware: bool = False,
    history_aware: bool = True,
    iteration: int | None = None,
    batch_size: int = 8192,
    quotas: dict[str, int] | None = None,
    max_rows: int | None = None,
) -> MiningResult:
    """Mine pool rows for the weak ``targets`` (one embedding row per target row, same order).

    Targets repeated per light are de-duplicated by row key (first embedding kept). ``history``
    ({iteration: [keys]}) entries of ``iteration`` or later are ignored, so re-running an iteration
    recomputes it instead of excluding its own rows. Each pool row goes to the target it is most
    similar to; ``quotas`` ({failure_mode: rows}, targets need a ``failure_mode`` column) then keep
    the most similar rows of each mode up to its quota, and ``max_rows`` the most similar overall.

    ``label_aware`` mines only pool rows of the target's label; ``class_aware`` only rows of its class
    (a missed defect's neighbours are defects, a false alarm's are PASS rows). Without either, a missed
    defect's nearest pool rows in the model's own embedding are mostly PASS rows (the model sees it as
    PASS): training on those pushes the missed defect further down.
    """
    if len(targets) != len(target_emb) or len(pool) != len(pool_emb):
        raise ValueError(f"embeddings do not match their frames: {len(targets)} targets vs {len(target_emb)} "
                         f"embeddings, {len(pool)} pool rows vs {len(pool_emb)} embeddings")
    if top_k_per_target < 1:
        raise InputError(f"mining top_k_per_target must be >= 1, got {top_k_per_target}.")
    history = _past_history(history or {}, iteration)
    target_keys = _keys(targets)
    first = ~target_keys.duplicated().to_numpy()
    targets, target_keys = targets[first].reset_index(drop=True), target_keys[first].reset_index(drop=True)
    target_emb = np.asarray(target_emb)[first]
    pool = pool.reset_index(drop=True)
    pool_keys = _keys(pool)
    excluded = _is_in(pool_keys, exclude_keys)
    mined_before = _is_in(pool_keys, [key for keys in history.values() for key in keys] if history_aware else [])
    eligible = ~excluded & ~mined_before

    warnings: list[str] = []
    candidates = []  # (target position, pool index, similarity)
    if label_aware:
        groups = targets.groupby("label", sort=True).groups
    elif class_aware:
        groups = targets.groupby(_is_defect(targets), sort=True).groups
    else:
        groups = {None: targets.index}
    for label, members in groups.items():
        members = np.asarray(members)
        valid = eligible
        if class_aware and not label_aware:
            valid = eligible & (_is_defect(pool).to_numpy() == label)
            if not valid.any():
                side = "defect" if label else "PASS"
                warnings.append(f"{len(members)} {side} target(s) unserved: no eligible {side} row in the mining pool.")
                continue
        elif label_aware:
            of_label = (pool["label"] == label).to_numpy()
            if not of_label.any():
                warnings.append(f"target label {label}: the mining pool has no rows of this label "
                                f"({len(members)} target(s) unserved).")
                continue
            valid = eligible & of_label
            if not valid.any():
                warnings.append(f"target label {label}: all {int(of_label.sum())} pool rows of this label were mined "
                                "before or are excluded.")
                continue
        idx, sims = cosine_topk(target_emb[members], pool_emb, top_k_per_target, batch_size, valid=valid)
        for row, member in enumerate(members):
            candidates.extend((int(member), int(i), float(s)) for i, s in zip(idx[row], sims[row]))

    above = _best_per_pool_row([c for c in candidates if c[2] >= min_similarity])
    chosen = above if quotas is None else _within_quotas(above, targets["failure_mode"], quotas)
    chosen = chosen if max_rows is None else chosen[:max(max_rows, 0)]
    rows = pool.iloc[[c[1] for c in chosen]].reset_index(drop=True)
    rows["similarity"] = [c[2] for c in chosen]
    rows["target_key"] = [target_keys.iloc[c[0]] for c in chosen]
    rows["target_label"] = [targets["label"].iloc[c[0]] for c in chosen]
    if "failure_mode" in targets.columns:
        rows["failure_mode"] = [targets["failure_mode"].iloc[c[0]] for c in chosen]
    rows["mining_reason"] = NEIGHBOUR

    previous_yield = _previous_yield(history)
    if previous_yield and len(rows) < YIELD_DROP_WARN_FRACTION * previous_yield:
        warnings.append(f"mining yield dropped to {len(rows)} row(s) from {previous_yield} in the previous iteration "
                        "(> 50% drop).")
    above_floor = sum(c[2] >= min_similarity for c in candidates)
    reason = None
    if rows.empty:
        reason = _nothing_mined_reason(len(targets), int(eligible.sum()), len(candidates), min_similarity)
    stats = {
        "targets": len(targets), "pool_rows": len(pool), "excluded_rows": int(excluded.sum()),
        "mined_before_rows": int((mined_before & ~excluded).sum()), "eligible_rows": int(eligible.sum()),
        "candidates": len(candidates), "above_floor": int(above_floor),
        "duplicates_dropped": int(above_floor - len(above)), "over_budget_dropped": len(above) - len(rows),
        "mined": len(rows),
        "previous_yield": previous_yield,
        "per_target_label": {str(k): int(v) for k, v in rows["target_label"].value_counts().sort_index().items()},
        "similarity": _describe(rows["similarity"]),
        "top_k_per_target": top_k_per_target, "min_similarity": min_similarity,
        "label_aware": label_aware, "history_aware": history_aware,
    }
    return MiningResult(rows, warnings, rows.empty, reason, stats, iteration)


NEIGHBOUR, HARD_EXAMPLE, RANDOM = "neighbour", "hard_example", "random"  # mined_rows.csv's mining_reason


def _eligible(pool_keys: pd.Series, *, history: dict, exclude_keys: Collection[str], history_aware: bool,
              iteration: int | None) -> np.ndarray:
    past = [key for keys in _past_history(history, iteration).values() for key in keys] if history_aware else []
    return ~_is_in(pool_keys, exclude_keys) & ~_is_in(pool_keys, past)


def hard_examples(pool: pd.DataFrame, scores: np.ndarray, threshold: float, count: int, *,
                  history: dict | None = None, exclude_keys: Collection[str] = frozenset(),
                  history_aware: bool = True, iteration: int | None = None,
                  defect_share: float | None = None) -> pd.DataFrame:
    """The ``count`` eligible pool rows with the highest weakness under the current model: how far its
    score sits on the wrong side of ``threshold`` (its validation 100%-recall threshold), in logits
    (defects: threshold - score, PASS: score - threshold; positive = misclassified). Unscored rows are
    never chosen. Adds ``weakness`` and ``mining_reason`` columns; weakest first.

    ``defect_share``: that share of the rows (rounded up) are defects and the rest PASS, weakest first
    in each; what one class cannot fill goes to the other. None ranks both classes together, where
    confidently flagged PASS rows (weakness of 5-8 logits) take every slot from the low-scored defects
    that set FAR at 100% recall."""
    pool = pool.reset_index(drop=True)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(pool):
        raise ValueError(f"{len(scores)} pool scores for {len(pool)} pool rows")
    eligible = _eligible(_keys(pool), history=history or {}, exclude_keys=exclude_keys, history_aware=history_aware,
                         iteration=iteration) & np.isfinite(scores)

    def logit(p):
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    is_defect = _is_defect(pool).to_numpy()
    weakness = np.where(is_defect, logit(threshold) - logit(scores), logit(scores) - logit(threshold))
    ranked = [int(i) for i in np.argsort(-weakness, kind="stable") if eligible[i]]
    count = max(count, 0)
    if defect_share is not None:
        defects = [i for i in ranked if is_defect[i]]
        passes = [i for i in ranked if not is_defect[i]]
        wanted = math.ceil(count * defect_share - 1e-9)  # 0.14 x 50 is 7.000000000000001, not 7
        take_defects = min(len(defects), max(count - len(passes), wanted))
        chosen = set(defects[:take_defects] + passes[:count - take_defects])
        ranked = [i for i in ranked if i in chosen]
    order = ranked[:count]
    rows = pool.iloc[order].reset_index(drop=True)
    rows["weakness"] = weakness[order]
    rows["mining_reason"] = HARD_EXAMPLE
    return rows


def random_rows(pool: pd.DataFrame, count: int, *, seed: int, history: dict | None = None,
                exclude_keys: Collection[str] = frozenset(), iteration: int | None = None) -> pd.DataFrame:
    """``count`` eligible pool rows drawn uniformly at random (seeded): the random-data control."""
    pool = pool.reset_index(drop=True)
    eligible = np.flatnonzero(_eligible(_keys(pool), history=history or {}, exclude_keys=exclude_keys,
                                        history_aware=True, iteration=iteration))
    chosen = np.random.default_rng(seed).permutation(eligible)[:max(count, 0)]
    rows = pool.iloc[np.sort(chosen)].reset_index(drop=True)
    rows["mining_reason"] = RANDOM
    return rows


def _is_defect(frame: pd.DataFrame) -> pd.Series:
    return frame["label"].astype(str) != csvdata.PASS_LABEL


def rows_keys(rows: pd.DataFrame) -> list[str]:
    return _keys(rows).tolist()


def _keys(frame: pd.DataFrame) -> pd.Series:
    return frame["row_key"].astype(str) if "row_key" in frame.columns else csvdata.row_key(frame)


def _is_in(keys: pd.Series, members: Collection[str]) -> np.ndarray:
    return keys.isin(set(members)).to_numpy()


def _best_per_pool_row(candidates: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """One candidate per pool row, its best similarity (ties: earlier target); best first overall."""
    ordered = sorted(candidates, key=lambda c: (-c[2], c[0], c[1]))
    seen: set[int] = set()
    chosen = []
    for candidate in ordered:
        if candidate[1] not in seen:
            seen.add(candidate[1])
            chosen.append(candidate)
    return chosen


def _within_quotas(chosen: list[tuple[int, int, float]], modes: pd.Series,
                   quotas: dict[str, int]) -> list[tuple[int, int, float]]:
    """The most similar candidates of each target's failure mode, up to that mode's quota."""
    taken: dict[str, int] = {}
    kept = []
    for candidate in chosen:
        mode = modes.iloc[candidate[0]]
        if taken.get(mode, 0) < quotas.get(mode, 0):
            taken[mode] = taken.get(mode, 0) + 1
            kept.append(candidate)
    return kept


def rows_per_mode(result: MiningResult) -> dict[str, int]:
    """Mined rows per failure mode (the availability the routing program may spend)."""
    if "failure_mode" not in result.rows.columns:
        return {}
    return {str(k): int(v) for k, v in result.rows["failure_mode"].value_counts().items()}


def _nothing_mined_reason(targets: int, eligible: int, candidates: int, floor: float) -> str:
    if targets == 0:
        return "no weak rows were routed to mining"
    if eligible == 0:
        return "every pool row was mined in an earlier iteration or is excluded (validation/KPI)"
    if candidates == 0:
        return "no pool row of the targets' labels is left to mine"
    return f"no pool row reaches the similarity floor {floor}"


def _past_history(history: dict, iteration: int | None) -> dict[str, list[str]]:
    normalised = {str(k): list(v) for k, v in history.items()}
    if iteration is None:
        return normalised
    return {k: v for k, v in normalised.items() if int(k) < iteration}


def _previous_yield(history: dict[str, list[str]]) -> int | None:
    if not history:
        return None
    return len(history[max(history, key=int)])


def _describe(values: pd.Series) -> dict:
    if values.empty:
        return {"min": None, "mean": None, "max": None}
    return {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}


def read_history(path: str | Path) -> dict[str, list[str]]:
    """``mining_history.json`` as {"<iteration>": [row keys]}; {} when the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = fsutil.read_json_input(path, what="mining history", fix="delete it to restart mining history.")
    if not isinstance(data, dict) or not all(str(k).isdigit() and isinstance(v, list) for k, v in data.items()):
        raise InputError(f"{path} must map iteration numbers to lists of row keys; delete it to restart mining history.")
    return {str(k): [str(key) for key in v] for k, v in data.items()}


def updated_history(history: dict, iteration: int, keys: Collection[str]) -> dict[str, list[str]]:
    """A new history with ``iteration``'s entry set to ``keys`` (replaced, so re-runs are idempotent)."""
    new = {str(k): list(v) for k, v in history.items()}
    new[str(iteration)] = sorted(set(keys))
    return dict(sorted(new.items(), key=lambda item: int(item[0])))


def write_mining(
    result: MiningResult, out_dir: str | Path, history_path: str | Path, *, history: dict, iteration: int | None = None
) -> None:
    """``mined_rows.csv``, ``mining_summary.json`` and ``history_path`` = ``history`` + this iteration's keys."""
    iteration = result.iteration if iteration is None else iteration
    if iteration is None:
        raise ValueError("write_mining needs the iteration number (iteration=<N>) to update the history")
    out = Path(out_dir)
    fsutil.write_csv(out / MINED_FILE, result.rows)
    fsutil.write_json(out / SUMMARY_FILE, {**result.summary(), "iteration": iteration})
    fsutil.write_json(history_path, updated_history(history, iteration, rows_keys(result.rows)))
