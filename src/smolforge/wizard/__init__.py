"""`smolforge init`: a guided set-up that writes one smolforge.yaml and nothing else.

The wizard only *writes* the YAML a non-interactive run reads: prompts (questionary) fill a
config dict, the schema validates it, a rich table summarises it, and the file is written
atomically after the final confirm. Ctrl-C at any point writes nothing.

- `checks`   parse and validate each answer (the reason is shown and the question re-asked)
- `hub`      token detection, whoami, write access, reachability (never echoes the token)
- `datapeek` detect a dataset's format and show sample rows before training
- `draft`    the config being built: preset + flags + answers, and the defaults derived from them
- `flow`     the interactive steps
- `summary`  the rich summary table
- `yamlout`  the minimal YAML (preset + what differs), checked by reloading it as `run` does
"""

from smolforge.wizard.draft import Draft, InitFlags

__all__ = ["Draft", "InitFlags"]
