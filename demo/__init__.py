"""Synthetic demo datasets in the real BSD layout (``python -m demo``); see ``docs/demo_data.md``.

Modules: ``data`` (planning, files, command line), ``audio`` (per-class sound synthesis),
``text`` (Freesound-like titles, tags, descriptions and class descriptions). Not part of the
product packages: it imports ``cache`` (taxonomy, manifest columns, config reading), and no
product package imports it.
"""
