"""The embedded demo AOI workspace: a parametric PCB component scene rendered per light
(``scene``), defects and PASS nuisances applied to it (``defects``), and the TAO workspace writer
with its splits, CSVs, spec and documented distribution gaps (``workspace``).

Generate one with ``aoideft demo --out DIR`` or ``workspace.generate_workspace(out, DemoConfig())``.
"""
