"""SDG: synthetic (golden, test) pairs for the routed weak rows, by one of two methods per label.

- ``transplant`` (sdg_transplant.py): a defect of ANY label is taken from the workspace's own defect
  rows (the routed target first, else a training row of its label) as its residual against the
  registered golden, and placed on a PASS training pair of the same component type, where the same
  local structure is; PASS targets give their measured nuisance (shift, gain, blur, noise) and
  residual to a PASS pair.
- ``procedural`` (sdg_procedural.py): defects drawn in image space by label-specific operations
  (solder blob, bridge, missing part, tombstone, ... the SMT labels; any other label a generic
  anomaly), PASS nuisance variants drawn from fixed ranges.

``auto`` uses ``procedural`` for ``procedural_labels`` and ``transplant`` for every other label; a
transplant that finds no residual to take (no donor of the label shows a change above its noise)
falls back to the procedural operation. Verification (sdg_verify.py) and the ingestion of
pre-generated pairs (sdg_ingest.py) are the same for both.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aoideft import csvdata, fsutil
from aoideft.errors import InputError
from aoideft.progress import Progress

from . import sdg_procedural as procedural, sdg_transplant as transplant
from .sdg_images import encode_image, load_image
from .sdg_ingest import INGEST_REPORT, ingest_pregenerated, ingested_before, pregenerated_to_ingest  # noqa: F401
from .sdg_layout import PASS_LABEL, as_rows, metadata, sdg_dirs, sdg_object_name
from .sdg_verify import VerifyRules, delete_pairs, verify  # noqa: F401  (the SDG stage's interface)

DEFAULT_MATCH_COLUMNS = ("comp_type_1",)
METHODS = ("auto", "transplant", "procedural")
# method auto: what stays procedural. The SMT labels have dedicated operations, which measured better
# than transplant on the SMT demo, and the procedural PASS variants measured better beside them than
# transplanted ones (benchmarks/README.md, misregistration section); every other label is transplanted.
DEFAULT_PROCEDURAL_LABELS = (PASS_LABEL, "EXCESS_SOLDER", "BRIDGE", "MISSING", "INSUFFICIENT_SOLDER", "SHIFT",
                             "SKEW", "TOMBSTONE", "POLARITY", "SURFACE_ANOMALY")
DONOR_TRIES = 3  # training rows of the label tried as donors when the target shows no residual
RECIPIENT_CANDIDATES = 8  # PASS pairs a residual is fitted to; the best-matching one takes it


def routed_labels(configured: Sequence[str] | None, datasets: Sequence[dict]) -> set[str]:
    """The labels SDG serves: ``configured`` (deft.sdg.labels), or when it is None every label with
    examples in the workspace (``datasets``: the rows of workspace.json's dataset table)."""
    if configured is not None:
        return set(configured)
    return {str(label) for table in datasets for label, count in table["labels"].items() if count}


def method_for(label: str, method: str, procedural_labels: Collection[str]) -> str:
    """``transplant`` or ``procedural`` for a label under ``method`` (see the module docstring)."""
    if method not in METHODS:
        raise InputError(f"deft.sdg.method must be one of {list(METHODS)}, got {method!r}.")
    if method == "auto":
        return "procedural" if label in procedural_labels else "transplant"
    return method


# ---------------------------------------------------------------------------------------------
# Budget and source choice


def split_budget(counts: dict[str, int], num_sdg: int) -> dict[str, int]:
    """Spread ``num_sdg`` over labels proportionally to ``counts``, at least one per label while budget lasts.

    Largest-remainder apportionment; then every label left at zero takes one pair from the label
    most above its proportional quota. Labels are ordered by count (desc), then name.
    """
    labels = sorted((label for label, n in counts.items() if n > 0), key=lambda label: (-counts[label], label))
    if num_sdg <= 0 or not labels:
        return {}
    if num_sdg <= len(labels):
        return {label: 1 for label in labels[:num_sdg]}
    total = sum(counts[label] for label in labels)
    quotas = {label: num_sdg * counts[label] / total for label in labels}
    alloc = {label: int(np.floor(quota)) for label, quota in quotas.items()}
    by_remainder = sorted(labels, key=lambda label: (-(quotas[label] - alloc[label]), labels.index(label)))
    for label in by_remainder[: num_sdg - sum(alloc.values())]:
        alloc[label] += 1
    for label in [label for label in labels if alloc[label] == 0]:
        donor = max((label for label in labels if alloc[label] > 1),
                    key=lambda label: (alloc[label] - quotas[label], -labels.index(label)))
        alloc[donor] -= 1
        alloc[label] = 1
    return alloc


class _SourcePicker:
    """Source rows for targets: same values in the match columns when possible, relaxed one column at
    a time from the least important (a mode's defining columns come first, then ``match_columns``),
    else any row.

    Within a candidate group rows are drawn without replacement (one shuffled cycle at a time) so a
    golden is reused only when its group is exhausted.
    """

    def __init__(self, sources: pd.DataFrame, match_columns: Collection[str], rng: np.random.Generator):
        self.sources, self.rng = sources, rng
        self.columns = [c for c in match_columns if c in sources.columns]
        self.cycles: dict[tuple, list[int]] = {}

    def pick(self, target: pd.Series, extra_columns: Collection[str] = ()) -> int:
        columns = [*(c for c in extra_columns if c in self.sources.columns), *self.columns]
        group = tuple(dict.fromkeys((c, target[c]) for c in columns if c in target.index and pd.notna(target[c])))
        candidates = self._candidates(group)
        while not candidates and group:
            group = group[:-1]
            candidates = self._candidates(group)
        queue = self.cycles.get(group)
        if not queue:
            queue = [candidates[i] for i in self.rng.permutation(len(candidates))]
            self.cycles[group] = queue
        return queue.pop()

    def _candidates(self, group: tuple) -> list[int]:
        mask = np.ones(len(self.sources), bool)
        for column, value in group:
            mask &= (self.sources[column] == value).to_numpy()
        return list(np.flatnonzero(mask))



# ---------------------------------------------------------------------------------------------
# Slots


@dataclass(frozen=True)
class Slot:
    """One pair to synthesise: its target row, how strong the change is, the mode it serves."""

    target: pd.Series
    strength: float = 1.0  # 1 = the full drawn defect; lower blends it toward the golden (subtler)
    mode: str = ""
    match_columns: tuple[str, ...] = ()  # besides DEFAULT_MATCH_COLUMNS, e.g. the mode's defining column


MIN_STRENGTH = 0.5  # a missed defect at the bottom of the score range is drawn at half strength


def label_slots(targets: pd.DataFrame, num_sdg: int) -> list[Slot]:
    """TAO's allocation: ``num_sdg`` pairs split over the targets' labels (see ``split_budget``)."""
    unique_targets = _unique_targets(targets)
    counts = unique_targets["label"].value_counts().to_dict()
    budget = split_budget({str(k): int(v) for k, v in counts.items()}, num_sdg)
    return [Slot(target) for target in _target_slots(unique_targets, budget)]


def mode_slots(targets: pd.DataFrame, modes: list[dict], *, oversample: int = 1) -> list[Slot]:
    """``oversample`` x each mode's quota, cycling the mode's weakest rows first.

    ``targets`` carry ``failure_mode``, ``mode_quota``, ``weakness`` and ``severity`` (failure_modes
    targets). Conditioning: the target's label and component type (source goldens are matched on
    them and on the mode's defining column), and for missed defects the severity: a defect the model
    scored lowest is drawn at ``MIN_STRENGTH``, one near the target threshold at full strength.
    """
    definitions = {mode["id"]: mode for mode in modes}
    slots = []
    for mode_id, rows in targets.groupby("failure_mode", sort=True):
        rows = rows.sort_values(["weakness", "row_key"], ascending=[False, True], kind="stable")
        count = int(rows["mode_quota"].iloc[0]) * max(1, oversample)
        extra = tuple(definitions.get(mode_id, {}).get("definition", {}).keys() - {"cluster", "label"})
        for i in range(count):
            target = rows.iloc[i % len(rows)]
            severity = target.get("severity")
            graded = target["label"] != PASS_LABEL and severity is not None and not pd.isna(severity)
            strength = MIN_STRENGTH + (1 - MIN_STRENGTH) * float(severity) if graded else 1.0
            slots.append(Slot(target, strength, str(mode_id), extra))
    return slots


# ---------------------------------------------------------------------------------------------
# Synthesis


@dataclass(frozen=True)
class Drawn:
    """One synthetic pair before it is written: the source row whose images it uses, its images per
    light (``golden`` None: the source's golden file is copied unchanged), how it was made."""

    source: pd.Series
    golden: list[np.ndarray] | None
    test: list[np.ndarray]
    modes: list[str]
    method: str
    donor: str = ""  # row key of the pair the residual or nuisance came from


class _Transplanter:
    """Transplant draws for one ``synthesize`` call: PASS recipients picked like procedural sources,
    the workspace's nuisance floor measured once, each row's pair, residual and nuisance once."""

    def __init__(self, sources: pd.DataFrame, source_keys: pd.Series, *, source_images_dir: Path,
                 target_images_dir: Path, lights: Sequence[str], image_ext: str, match_columns: Collection[str],
                 rng: np.random.Generator):
        self.lights, self.image_ext = list(lights), image_ext
        self.source_images_dir, self.target_images_dir = Path(source_images_dir), Path(target_images_dir)
        self.keys = source_keys
        is_pass = (sources["label"] == PASS_LABEL).to_numpy()
        self.recipients = _SourcePicker(sources[is_pass], match_columns, rng) if is_pass.any() else None
        self.donors = _SourcePicker(sources[~is_pass], ("label", *match_columns), rng) if (~is_pass).any() else None
        self.cache: dict[tuple[str, str, str], object] = {}
        self.floor = transplant.nuisance_floor([self.pair(self.source_images_dir, row, source_keys.loc[index])
                                                for index, row in sources[is_pass].head(transplant.FLOOR_PAIRS).iterrows()])

    def _cached(self, what: str, images_dir: Path, key: str, compute):
        entry = (what, str(images_dir), key)
        if entry not in self.cache:
            self.cache[entry] = compute()
        return self.cache[entry]

    def pair(self, images_dir: Path, row: pd.Series, key: str) -> transplant.Pair:
        return self._cached("pair", images_dir, key,
                            lambda: transplant.load_pair(images_dir, row, self.lights, self.image_ext))

    def residual(self, images_dir: Path, row: pd.Series, key: str) -> transplant.Residual | None:
        return self._cached("residual", images_dir, key,
                            lambda: transplant.extract_residual(self.pair(images_dir, row, key), self.floor))

    def nuisance(self, images_dir: Path, row: pd.Series, key: str) -> transplant.Nuisance:
        return self._cached("nuisance", images_dir, key,
                            lambda: transplant.measure_nuisance(self.pair(images_dir, row, key)))

    def draw(self, slot: Slot, rng: np.random.Generator) -> Drawn | None:
        """The slot's pair, or None when no recipient or no residual of its label exists."""
        if self.recipients is None:
            return None
        target, target_key = slot.target, slot.target["row_key"]
        residual, donor = self.residual(self.target_images_dir, target, target_key), target_key
        shape = self.pair(self.target_images_dir, target, target_key).test[0].shape
        if target["label"] == PASS_LABEL:
            found = self._recipient(slot, residual, shape)
            if found is None:
                return None
            recipient_row, recipient = found
            recipient_key = self.keys.loc[recipient_row.name]
            golden, test = transplant.pass_variant(self.nuisance(self.target_images_dir, target, target_key), residual,
                                                   recipient, self.nuisance(self.source_images_dir, recipient_row,
                                                                            recipient_key), rng)
            return Drawn(recipient_row, golden, test, recipient.modes, "transplant:nuisance", target_key)
        for _ in range(DONOR_TRIES if residual is None and self.donors is not None else 0):
            candidate = self.donors.sources.iloc[self.donors.pick(target)]
            if candidate["label"] != target["label"]:
                break  # the picker relaxed the label away: no training row of this label is left
            donor = self.keys.loc[candidate.name]
            residual = self.residual(self.source_images_dir, candidate, donor)
            if residual is not None:
                break
        found = None if residual is None else self._recipient(slot, residual, residual.planes[0].shape)
        if found is None:
            return None
        recipient_row, recipient = found
        test = transplant.transplant(residual, recipient, strength=slot.strength)
        return Drawn(recipient_row, None, test, recipient.modes, "transplant:residual", donor)

    def _recipient(self, slot: Slot, residual: transplant.Residual | None,
                   shape: tuple[int, ...]) -> tuple[pd.Series, transplant.Pair] | None:
        """A PASS source row matching the slot, with images of ``shape``, and its pair; with a residual,
        the best fit of up to RECIPIENT_CANDIDATES such rows (transplant.placement's score); None when
        none of the rows tried has that image size."""
        tries = RECIPIENT_CANDIDATES if residual is not None else 1
        best = None
        for _ in range(min(tries, len(self.recipients.sources))):
            row = self.recipients.sources.iloc[self.recipients.pick(slot.target, slot.match_columns)]
            pair = self.pair(self.source_images_dir, row, self.keys.loc[row.name])
            if pair.test[0].shape != shape:
                continue
            score = transplant.placement(residual, pair)[1] if residual is not None else 0.0
            if best is None or score > best[0]:
                best = (score, row, pair)
        return None if best is None else (best[1], best[2])


def _procedural(slot: Slot, source: pd.Series, source_key: str, *, source_images_dir: Path, lights: Sequence[str],
                image_ext: str, rng: np.random.Generator) -> Drawn:
    files = [csvdata.image_file(source_images_dir, source["golden_path"], source["object_name"], light, image_ext)
             for light in lights]
    goldens = [_load_golden(path, source_key) for path in files]
    plan = procedural.plan_defect(slot.target["label"], [image for image, _ in goldens], rng)
    tests = []
    for light, (golden, _) in zip(lights, goldens):
        drawn = procedural.render(golden, plan, light)
        tests.append(drawn if slot.strength == 1.0 else golden + slot.strength * (drawn - golden))
    return Drawn(source, None, tests, [mode for _, mode in goldens], f"procedural:{plan.kind}")


def synthesize(
    targets: pd.DataFrame,
    sources: pd.DataFrame,
    *,
    source_images_dir: str | Path,
    lights: list[str] | tuple[str, ...],
    image_ext: str,
    run_images_root: str | Path,
    iteration: int,
    num_sdg: int = 20,
    seed: int = 0,
    match_columns: Collection[str] = DEFAULT_MATCH_COLUMNS,
    slots: list[Slot] | None = None,
    method: str = "procedural",
    procedural_labels: Collection[str] = DEFAULT_PROCEDURAL_LABELS,
    target_images_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Write synthetic pairs for the routed ``targets`` and return their CSV rows.

    ``slots`` (one per pair, e.g. ``mode_slots``) decide what is drawn; without them, ``num_sdg``
    pairs split over the targets' labels (TAO's rule). ``targets``: SDG-routed gap rows (per light is
    fine; de-duplicated by row key), weakest first per label when a ``weakness`` column is present;
    their images are under ``target_images_dir`` (needed unless every label is drawn procedurally).
    ``sources``: training rows whose images are used (relative to ``source_images_dir``).
    ``method``/``procedural_labels``: see the module docstring. Deterministic in (seed, iteration).
    """
    if slots is None:
        slots = label_slots(targets, num_sdg)
    if not slots:
        return as_rows([], sources)
    if sources.empty:
        raise InputError("SDG has targets but the training data has no rows to take golden images from.")
    sources = sources.reset_index(drop=True)
    source_keys = csvdata.row_key(sources)
    rng = np.random.default_rng([seed, iteration])
    picker = _SourcePicker(sources, match_columns, rng)
    wanted = {method_for(str(slot.target["label"]), method, procedural_labels) for slot in slots}
    transplanter = None
    if "transplant" in wanted:
        if target_images_dir is None:
            raise InputError("SDG transplant needs the targets' images (target_images_dir).")
        transplanter = _Transplanter(sources, source_keys, source_images_dir=Path(source_images_dir),
                                     target_images_dir=Path(target_images_dir), lights=lights, image_ext=image_ext,
                                     match_columns=match_columns, rng=rng)
    test_dir, golden_dir = sdg_dirs(iteration)
    out_root = Path(run_images_root)
    rows = []
    progress = Progress(f"SDG iteration {iteration}", len(slots), unit="pairs").start(f"x {len(lights)} lights")
    for index, slot in enumerate(slots):
        pair_rng = np.random.default_rng([seed, iteration, index])
        drawn = None
        if method_for(str(slot.target["label"]), method, procedural_labels) == "transplant":
            drawn = transplanter.draw(slot, pair_rng)
        if drawn is None:
            source = sources.iloc[picker.pick(slot.target, slot.match_columns)]
            drawn = _procedural(slot, source, source_keys.iloc[source.name], source_images_dir=Path(source_images_dir),
                                lights=lights, image_ext=image_ext, rng=pair_rng)
        rows.append(_write(drawn, slot, sdg_object_name(iteration, index), source_key=source_keys.iloc[drawn.source.name],
                           source_images_dir=Path(source_images_dir), out_root=out_root, dirs=(test_dir, golden_dir),
                           lights=lights, image_ext=image_ext))
        progress.advance()
    progress.finish()
    return as_rows(rows, sources)


def _write(drawn: Drawn, slot: Slot, name: str, *, source_key: str, source_images_dir: Path, out_root: Path,
           dirs: tuple[str, str], lights: Sequence[str], image_ext: str) -> dict:
    """Write one drawn pair's images; its CSV row. ``sdg_change``: mean |test - golden|, worst light."""
    test_dir, golden_dir = dirs
    change = 0.0
    for index, light in enumerate(lights):
        golden_file = csvdata.image_file(source_images_dir, drawn.source["golden_path"], drawn.source["object_name"],
                                         light, image_ext)
        out_golden = csvdata.image_file(out_root, golden_dir, name, light, image_ext)
        if drawn.golden is None:
            fsutil.write_bytes(out_golden, golden_file.read_bytes())
            golden = load_image(golden_file)[0]
        else:
            golden = drawn.golden[index]
            fsutil.write_bytes(out_golden, encode_image(golden, drawn.modes[index], image_ext))
        change = max(change, float(np.abs(drawn.test[index] - golden).mean()))
        fsutil.write_bytes(csvdata.image_file(out_root, test_dir, name, light, image_ext),
                           encode_image(drawn.test[index], drawn.modes[index], image_ext))
    return {
        "input_path": test_dir, "golden_path": golden_dir, "label": slot.target["label"], "object_name": name,
        **metadata(drawn.source),
        "sdg_source": source_key, "sdg_target": slot.target["row_key"], "sdg_method": drawn.method,
        "sdg_donor": drawn.donor, "sdg_mode": slot.mode, "sdg_strength": round(slot.strength, 4),
        "sdg_change": round(change, 4),
    }


def _unique_targets(targets: pd.DataFrame) -> pd.DataFrame:
    frame = targets.copy()
    if "row_key" not in frame.columns:
        frame["row_key"] = csvdata.row_key(frame)
    if "weakness" in frame.columns:
        frame = frame.sort_values(["label", "weakness", "row_key"], ascending=[True, False, True], kind="stable")
    return frame.drop_duplicates("row_key").reset_index(drop=True)


def _target_slots(targets: pd.DataFrame, budget: dict[str, int]) -> list[pd.Series]:
    """Budgeted targets in pair order: label by label (as budgeted), cycling its weakest rows first."""
    slots = []
    for label, count in budget.items():
        rows = targets[targets["label"] == label]
        slots.extend(rows.iloc[i % len(rows)] for i in range(count))
    return slots


def _load_golden(path: Path, source_key: str) -> tuple[np.ndarray, str]:
    if not path.is_file():
        raise InputError(f"SDG source golden image {path} (training row {source_key}) does not exist; fix the training "
                         "CSV or the images.")
    return load_image(path)


# ---------------------------------------------------------------------------------------------
# Outputs


def write_sdg_manifest(rows: pd.DataFrame, out_dir: str | Path, *, details: dict | None = None) -> None:
    """``sdg_rows.csv`` and ``sdg_summary.json`` (per-label and per-method counts, + ``details``)."""
    out = Path(out_dir)
    fsutil.write_csv(out / "sdg_rows.csv", rows)
    def counts(column: str) -> dict[str, int]:
        if column not in rows.columns:
            return {}
        return {str(k): int(v) for k, v in rows[column].value_counts().sort_index().items()}

    summary = {
        "total": len(rows),
        "per_label": counts("label"),
        "per_method": counts("sdg_method"),
        **(details or {}),
    }
    fsutil.write_json(out / "sdg_summary.json", summary)
