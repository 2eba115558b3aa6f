"""`smolforge init`: a guided set-up that writes one smolforge.yaml and nothing else.

The wizard only *writes* the YAML a non-interactive run reads: prompts (questionary) fill a
config dict, the schema validates it, a rich table summarises it, and the file is written
atomically after the final confirm. Ctrl-C at any point writes nothing.

- `ask`      ask one setting: prompt, default and check from the setting's declaration
- `checks`   the answers that need more than one setting's declaration (dataset, model, license, token)
- `hub`      step 1: token detection, whoami, write access, storing a typed token (never echoes it)
- `datapeek` detect a dataset's format and show sample rows before training
- `draft`    the config being built: preset + flags + answers, and the defaults derived from them
- `flow`     the interactive steps and the lists of settings each step asks
- `prompts`  questionary prompts that re-ask with the reason and never swallow Ctrl-C
- `summary`  the rich summary table
- `yamlout`  the minimal YAML (preset + what differs), checked by reloading it as `run` does
- `main`     `smolforge init`: the terminal / `--yes` rules
"""
