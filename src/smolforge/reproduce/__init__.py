"""The reproducibility record and `smolforge reproduce`.

- `environment`: smolforge, every installed package, Python and torch builds, the device; differences.
- `identity`: the data's identity (SHA-256 of local files, a Hub dataset's commit) and the base model's.
- `manifest`: manifest.json, written beside results.json before a run trains.
- `compare`: every number on the card, original against reproduced, and the weights tensor by tensor.
- `command`: `smolforge reproduce RUN_DIR`: warn about every difference, re-run into a new folder, verdict.
"""
