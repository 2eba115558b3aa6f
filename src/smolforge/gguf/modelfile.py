"""An Ollama Modelfile for a GGUF file: its chat template in Ollama's Go-template syntax, stop tokens and
sampling parameters from the run.

The template is chosen from the trained chat template's format: SmolLM3's reasoning ChatML (a system turn
that always states `Reasoning Mode: /think` or `/no_think`, and an empty `<think></think>` block before
answers in `/no_think` mode) or plain ChatML. Ollama's `think` option (`ollama run --think=false`, the API's
`think`) picks the mode; unset, it is the trained template's default, `/think`, or `/no_think` for a model
trained only in that mode. A system prompt that is exactly `/think` or `/no_think` picks it too. Ollama's
template language has no substring test, so a flag inside a longer system prompt is passed through as text
(SmolLM3's own template would act on it). Formats other than these get no TEMPLATE line: Ollama then uses
the template it recognises in the GGUF.
"""

from __future__ import annotations

import json
from typing import Any

SMOLLM3_TEMPLATE = '''{{- $mode := "/think" }}
{{- if .IsThinkSet }}{{ if .Think }}{{ $mode = "/think" }}{{ else }}{{ $mode = "/no_think" }}{{ end }}{{ end }}
{{- $system := .System }}
{{- if eq $system "/no_think" }}{{ $mode = "/no_think" }}{{ $system = "" }}
{{- else if eq $system "/think" }}{{ $mode = "/think" }}{{ $system = "" }}{{ end -}}
<|im_start|>system
Reasoning Mode: {{ $mode }}
{{ if $system }}
{{ $system }}
{{ end }}<|im_end|>
{{ range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<|im_start|>user
{{ $m.Content }}<|im_end|>
{{ if $last }}<|im_start|>assistant
{{ if eq $mode "/no_think" }}<think>

</think>
{{ end }}{{ end }}
{{- else if eq $m.Role "assistant" }}<|im_start|>assistant
{{ if eq $mode "/no_think" }}<think>

</think>
{{ end }}{{ $m.Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- end }}'''

CHATML_TEMPLATE = '''{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<|im_start|>user
{{ $m.Content }}<|im_end|>
{{ if $last }}<|im_start|>assistant
{{ end }}
{{- else if eq $m.Role "assistant" }}<|im_start|>assistant
{{ $m.Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- end }}'''

# generation_config.json name -> Ollama PARAMETER name
SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
            "repetition_penalty": "repeat_penalty"}


def chat_format(template: str | None) -> str | None:
    """`smollm3` (reasoning ChatML), `chatml`, or None for a format without an Ollama template here."""
    if not template or "<|im_start|>" not in template:
        return None
    return "smollm3" if "/no_think" in template and "Reasoning Mode" in template else "chatml"


def sampling_parameters(generation_config: dict[str, Any]) -> dict[str, Any]:
    """The sampling defaults the fine-tune's generation_config.json sets (the same the GGUF embeds)."""
    return {ollama: generation_config[hf] for hf, ollama in SAMPLING.items()
            if isinstance(generation_config.get(hf), (int, float)) and not isinstance(generation_config[hf], bool)}


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def smollm3_template(default_mode: str = "/think") -> str:
    """The reasoning ChatML template whose mode, when Ollama's `think` is not set, is `default_mode`."""
    return SMOLLM3_TEMPLATE.replace('{{- $mode := "/think" }}', f'{{{{- $mode := "{default_mode}" }}}}', 1)


def modelfile(gguf_file: str, template: str | None, stop_tokens: list[str], generation_config: dict[str, Any],
              num_ctx: int | None, title: str, default_mode: str = "/think") -> str:
    """`default_mode`: the reasoning mode when nothing asks for one: /no_think for a model trained only without
    reasoning traces (it never learned to reason, so /think would ask for what it cannot do)."""
    fmt = chat_format(template)
    lines = [f"# Ollama Modelfile for {title}, written by smolforge.",
             "#   ollama create <name> -f Modelfile && ollama run <name>"]
    if fmt == "smollm3" and default_mode == "/no_think":
        lines.append("# Reasoning: /no_think by default, the only mode this model was trained in; `ollama run <name> "
                     "--think` (or a system prompt of exactly /think) asks it to reason anyway.")
    elif fmt == "smollm3":
        lines.append("# Reasoning: /think by default; `ollama run <name> --think=false` (or a system prompt of exactly "
                     "/no_think) answers without reasoning.")
    lines += [f"FROM ./{gguf_file}", ""]
    if fmt is not None:
        chosen = smollm3_template(default_mode) if fmt == "smollm3" else CHATML_TEMPLATE
        lines += [f'TEMPLATE """{chosen}"""', ""]
    else:
        lines += ["# No TEMPLATE: Ollama uses the chat template it recognises in the GGUF file.", ""]
    lines += [f"PARAMETER stop {_quote(t)}" for t in stop_tokens]
    lines += [f"PARAMETER {name} {value}" for name, value in sampling_parameters(generation_config).items()]
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"
