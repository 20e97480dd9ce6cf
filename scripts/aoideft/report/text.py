"""``summary.txt``: the report's verdicts and model table as plain text, for the terminal at the end of
a run (the Snakefile's ``onsuccess`` prints it) and for anyone reading a run folder without a browser.

It renders the same context as the HTML report (``aoideft.workflow.report_context``), so its figures
are the report's to the digit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .render import DASH, fmt_pct, kpi_verdict, loop_verdict

COLUMNS = ("model", "gate", "validation FAR@100%", "{basis} FAR@100%", "deployable FAR (recall)",
           "TAO's figure")


def _gate(row: Mapping[str, Any], gated: bool) -> str:
    if not gated:  # TAO's selection (deft.kpi_holdout: 0): no accept-or-keep gate
        return DASH
    if row["label"] == "baseline":
        return "incumbent"
    return {True: "accepted", False: "rejected", None: DASH}[row.get("accepted")]


def _deployable(row: Mapping[str, Any]) -> str:
    if row.get("deployable_far_pct") is None:
        return DASH
    recall = row.get("deployable_recall")
    return fmt_pct(row["deployable_far_pct"], 1) + (f" ({recall:.1%})" if recall is not None else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in [header, *rows]]


def model_table(models: Sequence[Mapping[str, Any]], basis: str, gated: bool = True) -> list[str]:
    header = [column.format(basis=basis) for column in COLUMNS]
    rows = [[row["label"] + (" <- delivered" if row.get("delivered") else ""), _gate(row, gated),
             fmt_pct(row.get("val_far_pct"), 1), fmt_pct(row.get("basis_far_pct"), 1), _deployable(row),
             fmt_pct(row.get("kpi_far_pct"), 1)] for row in models]
    return _table(header, rows)


def summary_text(context: Mapping[str, Any], report_path: str) -> str:
    header = context["header"]
    lines = [f"AOI DEFT run {header['run_dir']}: {header.get('iterations_run', 0)} DEFT iteration(s), "
             f"stopped on {header.get('stop_reason') or DASH}. Full report: {report_path}"]
    delivery = context.get("delivery")
    if not delivery:
        return "\n".join([*lines, "No model has been evaluated yet."]) + "\n"
    basis_set = next(s for s in delivery["sets"] if s["is_basis"])
    verdict = kpi_verdict(basis_set.get("far100_pct"), basis_set.get("far100_ci95"), header["kpi_target"],
                          header["basis"])
    lines += [f"{verdict['headline']} on the {verdict['basis']}: {verdict['detail']}",
              f"Delivered: {delivery['label']}, checkpoint {delivery['checkpoint']}, threshold "
              f"{delivery['threshold']:.4f} ({delivery['threshold_from']}); at it the {basis_set['name']} has FAR "
              f"{fmt_pct(basis_set.get('far_pct'), 1)} with {basis_set['missed']} of {basis_set['n_defect']} "
              "defects missed.", ""]
    gated = header.get("basis_key") != "whole"
    lines += model_table(context["models"], header["basis"], gated)
    chosen_on = ("validation: what every choice used" if gated else
                 "every choice used the whole KPI set (TAO's rule, deft.kpi_holdout: 0); validation: for reference")
    lines += ["", f"{chosen_on}; deployable: the threshold from validation applied to the {header['basis']}; "
              "TAO's figure: the whole KPI set with its threshold chosen on it (optimistic)."]
    effect = context.get("loop_effect")
    if effect:
        judged = loop_verdict(effect, header["basis"])
        lines += ["", f"Did the loop help? {judged['headline']} ({judged['detail']})"]
        lines += [f"  {line}" for line in effect.get("validation") or []]
    if context.get("recommendations"):
        lines += ["", "Next steps:", *(f"  - {advice}" for advice in context["recommendations"])]
    return "\n".join(lines) + "\n"
