"""Training the built-in default advice model on synthetic scenes, and evaluating bundles with it.

`edge train` (trainer.py) teaches a tiny Qwen3-VL-MoE (export.tiny's dimensions, so the export path
is unchanged) to answer the runtime's exact prompt with the advice JSON the runtime's grammar
admits; `edge eval` (eval.py) replays held-out scenes through the real runtime loop per precision.
"""
