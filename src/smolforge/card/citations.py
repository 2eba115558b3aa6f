"""BibTeX for the card: the model itself (from run facts and the author), and what it was built with.

The references are fixed texts of published works; which ones a card lists depends on the run (DPO
only for DPO runs, LoRA / QLoRA only for adapter runs, SmolLM3 only when it is the base).
"""

from __future__ import annotations

from typing import Any

TEX_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$",
               "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}

TRL = """@misc{vonwerra2022trl,
  author       = {Leandro von Werra and Younes Belkada and Lewis Tunstall and Edward Beeching and Tristan Thrush and
                  Nathan Lambert and Shengyi Huang and Kashif Rasul and Quentin Gallou{\\'e}dec},
  title        = {{TRL: Transformer Reinforcement Learning}},
  year         = {2020},
  publisher    = {GitHub},
  howpublished = {\\url{https://github.com/huggingface/trl}}
}"""
DPO = """@inproceedings{rafailov2023direct,
  author       = {Rafael Rafailov and Archit Sharma and Eric Mitchell and Stefano Ermon and Christopher D. Manning and
                  Chelsea Finn},
  title        = {{Direct Preference Optimization: Your Language Model is Secretly a Reward Model}},
  booktitle    = {Advances in Neural Information Processing Systems},
  year         = {2023},
  eprint       = {2305.18290},
  archivePrefix = {arXiv}
}"""
LORA = """@inproceedings{hu2022lora,
  author       = {Edward J. Hu and Yelong Shen and Phillip Wallis and Zeyuan Allen-Zhu and Yuanzhi Li and Shean Wang and
                  Lu Wang and Weizhu Chen},
  title        = {{LoRA: Low-Rank Adaptation of Large Language Models}},
  booktitle    = {International Conference on Learning Representations},
  year         = {2022},
  eprint       = {2106.09685},
  archivePrefix = {arXiv}
}"""
QLORA = """@inproceedings{dettmers2023qlora,
  author       = {Tim Dettmers and Artidoro Pagnoni and Ari Holtzman and Luke Zettlemoyer},
  title        = {{QLoRA: Efficient Finetuning of Quantized LLMs}},
  booktitle    = {Advances in Neural Information Processing Systems},
  year         = {2023},
  eprint       = {2305.14314},
  archivePrefix = {arXiv}
}"""
SMOLLM3 = """@misc{bakouch2025smollm3,
  author       = {Elie Bakouch and others},
  title        = {{SmolLM3: smol, multilingual, long-context reasoner}},
  year         = {2025},
  publisher    = {Hugging Face},
  howpublished = {\\url{https://huggingface.co/blog/smollm3}}
}"""


def tex(text: str) -> str:
    """User text inside a BibTeX field: one line, (La)TeX specials escaped, braces balanced."""
    return "".join(TEX_ESCAPES.get(c, c) for c in " ".join(str(text).split()))


def model_entry(ctx: dict[str, Any]) -> str:
    """This model (the key is the run's unique slug)."""
    lines = [f"@misc{{{ctx['model_name_slug']},", f"  title        = {{{tex(ctx['model_name'])}}},"]
    if ctx.get("author_name"):
        lines.append(f"  author       = {{{tex(ctx['author_name'])}}},")
    lines.append(f"  year         = {{{ctx['citation_year']}}},")
    if ctx.get("repo_name"):
        lines.append(f"  howpublished = {{\\url{{{ctx['hub_url']}/{ctx['repo_name']}}}}},")
    lines.append("  note         = {Trained with smolforge}")
    lines.append("}")
    return "\n".join(lines)


def smolforge_entry(version: str | None) -> str:
    """smolforge itself, at the version that trained the model."""
    lines = ["@software{smolforge,", "  title        = {smolforge: configure, train, evaluate and publish small "
             "language models},"]
    if version:
        lines.append(f"  version      = {{{tex(version)}}},")
    lines.append("}")
    return "\n".join(lines)


def references(ctx: dict[str, Any]) -> list[str]:
    """The works this model was built with: smolforge and TRL always, DPO for DPO runs, LoRA for adapter runs (and
    QLoRA over a 4-bit base), SmolLM3 when it is the base."""
    refs = [smolforge_entry(ctx.get("smolforge_version")), TRL]
    if ctx.get("dpo"):
        refs.append(DPO)
    if ctx.get("lora"):
        refs.append(LORA)
    if ctx.get("four_bit_base"):
        refs.append(QLORA)
    if "smollm3" in str(ctx.get("base_model_id") or "").lower():
        refs.append(SMOLLM3)
    return refs
