"""`smolforge plan`: will this config fit, and how long will it take, before anything is downloaded or loaded.

- `model`: parameters and activation bytes per token from config.json on the meta device (no weights).
- `batches`: steps and tokens per step from the data's own token lengths, batched like the run.
- `memory`, `speed`: the formulas (peak memory term by term; FLOPs per token and time).
- `gpus`: named GPUs (peak FLOP/s, memory) and the assumed MFU; `target`: the device a plan is for.
- `estimate`: the plan, and what would fit when it does not; `calibrate`: a few real steps correct it.
- `report`: the table, `run`'s summary rows, the JSON record and results.json's prediction vs measured.
- `command`: `smolforge plan` and the plan `smolforge run` shows.

Importing this package stays cheap; torch, transformers and accelerate load inside the functions that need them.
"""
