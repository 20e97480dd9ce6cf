"""``DEFT_Loop_Report.html``: the page an inspection engineer reads to decide what to deploy.

- ``types``: the context (plain data) the workflow builds (``aoideft.workflow.report_context``);
- ``render``: verdicts, charts and HTML from that context (``render_report``);
- ``charts``: inline SVG line charts and histograms with linear, log and logit axes;
- ``images``: PNG data URIs, the only images a page holds;
- ``stats``: a proportion's interval at a fixed threshold, logit-binned score histograms.
"""

from .images import png_base64, png_data_uri
from .render import render_html, render_report

__all__ = ["png_base64", "png_data_uri", "render_html", "render_report"]
