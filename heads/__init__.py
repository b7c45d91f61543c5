"""Head tier: LLM-prior fusion heads on cached features (``python -m heads``, docs/heads.md).

Modules: ``model`` (FusionHead, shared with ``finetune``), ``losses``, ``schedule``,
``early_stopping``, ``stacked`` (K heads as one flat weight buffer, batched AdamW), ``training``
(trainer on cached features), ``search``, ``ensemble`` (mean logits, selection, decoding),
``data`` (inputs from cache stores), ``runs`` (run folders, logits/pseudo-label tables),
``pipeline`` (stages 1-3 → ensemble → report → submission), ``commands`` (train, search, cv,
baseline, predict, …), ``report``, ``submission``, ``metric`` and ``score``.
"""
