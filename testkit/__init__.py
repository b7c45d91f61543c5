"""Test doubles and tiny dataset writers shared by ``tests/`` and ``benchmarks/``.

Modules: ``bsd_dataset`` (tiny datasets in the real BSD layout), ``synthetic_heads`` (synthetic
head inputs and stores), ``fake_llm_server`` (a local OpenAI-compatible server that injects
faults). Not part of the product: no product package imports it.
"""
