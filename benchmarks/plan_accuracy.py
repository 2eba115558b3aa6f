"""How close `smolforge plan` comes to what the runs it predicts measure, on this machine.

For each configuration (the tiny preset: full and LoRA fine-tunes, padding-free and padded batches) it runs
`smolforge plan --calibrate --json` and then `smolforge run` with the same options, in a temporary folder,
offline, and reads results.json's `plan` section: the formula's prediction, the calibrated one, and what the run
measured (peak RSS, processed tokens per second of training time, processed tokens).

    python benchmarks/plan_accuracy.py [--keep DIR]

Prints the machine (CPU, cores, load average before and after: the runs share the machine with whatever else
runs), then one line per configuration:
    name rss_formula=-14% rss_calibrated=-2% tps_formula=-61% tps_calibrated=+8% tokens=+0.0% (measured: ...)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FAST = ["--set", "model.tiny.hidden_size=64", "--set", "model.tiny.intermediate_size=128",
        "--set", "model.tiny.num_layers=2", "--set", "model.tiny.num_heads=2", "--set", "model.tiny.num_kv_heads=1",
        "--set", "model.tiny.vocab_size=512"]
COMMON = ["--set", "evaluation.tasks=[]", "--set", "data.max_samples=400", "--set", "training.epochs=1",
          "--set", "training.eval_steps=15", "--set", "tracking.backend=none"]
CONFIGS = {
    "full-padding-free": FAST,
    "lora-padding-free": [*FAST, "--set", "training.finetune=lora", "--set", "training.lora.r=8"],
    "full-padded": [*FAST, "--set", "training.batching=padded"],
    "full-padded-wide": ["--set", "training.batching=padded", "--set", "training.batch_size=16"],
}
SMOLFORGE = str(Path(sys.executable).with_name("smolforge"))


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(root / "hf"), SMOLFORGE_CACHE=str(root / "cache"), TRACKIO_DIR=str(root / "trackio"),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="120",
               TORCHAO_FORCE_SKIP_LOADING_SO_FILES="1", TOKENIZERS_PARALLELISM="false")
    return env


def _cli(args: list[str], root: Path) -> str:
    proc = subprocess.run([SMOLFORGE, *args], cwd=root, env=_env(root), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"smolforge {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="run here and keep the run folders")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from smolforge import hardware

    root = args.keep or Path(tempfile.mkdtemp(prefix="smolforge-plan-accuracy-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {hardware.detect()['summary']}; load average before: {os.getloadavg()[0]:.1f}")
    for name, extra in CONFIGS.items():
        options = ["--preset", "tiny", *extra, *COMMON]
        _cli(["plan", *options, "--calibrate", "--json"], root)
        _cli(["run", *options, "--yes", "--experiment-name", name], root)
        check = json.loads((root / "runs" / name / "results.json").read_text())["plan"]
        err, ferr, measured = check["error"], check.get("formula_error", {}), check["measured"]
        print(f"{name} rss_formula={_pct(ferr.get('peak_memory_mib'))} rss_calibrated="
              f"{_pct(err.get('peak_memory_mib'))} tps_formula={_pct(ferr.get('tokens_per_second'))} "
              f"tps_calibrated={_pct(err.get('tokens_per_second'))} tokens={_pct(err.get('processed_tokens'))} "
              f"(measured: {measured['peak_memory_mib']:.0f} MiB, {measured['tokens_per_second']:,.0f} tokens/s, "
              f"{measured['steps']} steps in {measured['train_runtime_s']:.1f} s)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
