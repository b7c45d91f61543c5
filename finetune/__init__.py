"""Fine-tune tier: end-to-end three-stage training of backbone + fusion head (``finetune/run.py``).

Modules: ``config`` (typed TOML config, stage sections, ``--set`` overrides), ``search_space``
(the hyperparameter search ranges per backbone and stage), ``data`` (clip sets, audio decoding
in workers, batch plans), ``model`` (backbone + FusionHead, weight files), ``loss`` (the
reference loss split over ranks), ``evaluate`` (gathered prediction and scoring),
``datasets`` (the stage's manifests, split and clip sets), ``checkpointing`` (crash-safe
training states and resuming from them), ``output_folder`` (the output folder's lock and the
files written there), ``trainer`` (the loop), ``sweep`` (random search), ``launch_command``
(the command line that starts ``run.py`` in N processes). See docs/finetune.md.
"""
