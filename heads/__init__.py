"""Head tier: LLM-prior fusion heads on cached features (``python -m heads``, docs/heads.md).

Modules:

* the head and its training: ``model`` (FusionHead, shared with ``finetune``), ``losses`` (the
  reference loss and the trainer's fused form), ``schedule``, ``early_stopping``, ``stacked`` (K
  heads as one flat weight buffer, batched AdamW), ``training`` (trainer on cached features),
  ``search`` (random search), ``ensemble`` (mean logits, selection, decoding);
* inputs and outputs: ``data`` (inputs from cache stores, splits), ``run_folder`` (saved runs),
  ``json_files``, ``report`` (per-class tables, confusion matrices, curves), ``submission``,
  ``score`` (``python -m heads.score``);
* the pipeline: ``pipeline_config``, ``pipeline_data``, ``pipeline`` (stages 1-3 → ensemble →
  report → submission), ``stage_store`` (what each step saves under ``out/``), ``pipeline_report``;
* the other commands: ``train_search`` (train, search), ``logits_tables`` (pseudo-labels,
  ensembles and reports from any logits tables), ``predict`` (predict, submit from an
  ensemble), ``cross_validation`` (cv), ``baseline``; ``cli`` parses them all.
"""
