"""Fine-tune tier: end-to-end three-stage training of backbone + fusion head (``finetune/run.py``).

Modules: ``config`` (typed TOML config + overrides), ``table1`` (the report's search ranges),
``data`` (clip sets, audio decoding in workers, batch plans), ``model`` (backbone + FusionHead,
weight files), ``loss`` (the reference loss split over ranks), ``evaluate`` (gathered
prediction and scoring), ``checkpointing`` (crash-safe training states), ``trainer`` (the
loop), ``sweep`` (random search). See docs/finetune.md.
"""
