"""`smolforge reproduce RUN_DIR [--output-dir NEW]`: train a run again from its manifest and check every number.

Before training it lists every difference from the record: the environment (each package, the Python and
torch builds, the device), the data (a local file whose SHA-256 changed, a Hub dataset pinned to its
recorded commit) and the base model. The new run gets the recorded config with the Hub revisions pinned,
its own folder and name, and nothing published; the original folder is only read. The verdict (every card
number and the weights, exact on a CPU, within a stated tolerance elsewhere) goes into the new run's
results.json and card; the exit code says whether it reproduced (0) or not (1).
"""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path
from typing import Any

from smolforge.card.writer import refresh_card
from smolforge.commands.run import print_summary
from smolforge.config.loading import deep_merge, validate
from smolforge.console import print_rows
from smolforge.errors import SmolforgeError
from smolforge.pipeline import RunOptions, execute
from smolforge.reproduce.compare import (
    GPU_RTOL,
    Row,
    WeightsCheck,
    compare_numbers,
    compare_weights,
    later_variants,
)
from smolforge.reproduce.environment import capture, differences
from smolforge.reproduce.identity import data_identity, identity_differences, model_identity, reward_identity
from smolforge.reproduce.manifest import read
from smolforge.runfolder import RunFolder


class NotReproduced(SmolforgeError):
    """The re-run finished, but numbers or weights differ from the original."""

    exit_code = 1


def _config_for(original: RunFolder, manifest: dict[str, Any], output: Path) -> Any:
    """The recorded config, evaluation choices made later included, Hub revisions pinned, publishing off."""
    data = deep_merge(manifest["config"], {"evaluation": original.read_overrides().get("evaluation") or {}})
    data["experiment_name"] = output.name
    data["output_dir"] = str(output)
    data["publish"] = {**data.get("publish", {}), "repo_id": None, "demo_space": None}
    data["tracking"] = {**data.get("tracking", {}), "space_id": None, "dataset_repo": None}
    if manifest["model"].get("kind") == "hub" and manifest["model"].get("revision"):
        data["model"] = {**data["model"], "revision": manifest["model"]["revision"]}
    if manifest["data"].get("kind") == "hub" and manifest["data"].get("revision"):
        data["data"] = {**data["data"], "revision": manifest["data"]["revision"]}
    return validate(data, f"{original.manifest_path}")


def _default_output(original: RunFolder) -> Path:
    base = original.root.parent / f"{original.root.name}-reproduced"
    return base if not base.exists() else base.with_name(f"{base.name}-{datetime.now():%Y%m%d-%H%M%S}")


def _differences(original: RunFolder, manifest: dict[str, Any], cfg) -> tuple[list[str], list[str]]:
    """(environment differences, data and model differences) between the record and this machine now."""
    env = differences(manifest["environment"], capture())
    inputs: list[str] = []
    if manifest["data"].get("kind") in ("local", "builtin"):
        inputs += identity_differences("data", manifest["data"], _local_data_identity(cfg))
    elif not manifest["data"].get("revision"):
        inputs.append(f"data {manifest['data'].get('repo')}: its commit was not recorded, so the Hub's current "
                      "revision is used")
    inputs += identity_differences("base model", manifest["model"], model_identity(cfg))
    if manifest.get("rewards"):
        inputs += identity_differences("reward function", manifest["rewards"], reward_identity(cfg))
    if manifest["model"].get("kind") == "hub" and not manifest["model"].get("revision"):
        inputs.append(f"base model {manifest['model'].get('repo')}: its commit was not recorded, so the current "
                      "revision is used")
    recorded_sha = manifest.get("config_yaml_sha256")
    if recorded_sha and original.config_path.is_file():
        import hashlib

        if hashlib.sha256(original.config_path.read_bytes()).hexdigest() != recorded_sha:
            inputs.append(f"{original.config_path} was edited after the run: the manifest's config is used")
    return env, inputs


def _local_data_identity(cfg) -> dict[str, Any]:
    return data_identity(cfg, None)


def _verdict(rows: list[Row], weights: WeightsCheck | None, exact: bool) -> bool:
    return all(r.match for r in rows if r.judged) and (weights is None or weights.match(exact))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return repr(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def reproduce_command(run_dir: Path, output_dir: Path | None, console) -> RunFolder:
    original = RunFolder.existing(run_dir).require_finished()
    manifest = read(original)
    output = output_dir or _default_output(original)
    if output.resolve() == original.root.resolve():
        raise SmolforgeError("--output-dir is the run being reproduced: give a new folder (the original is only "
                             "read, never changed).")
    cfg = _config_for(original, manifest, output)
    env, inputs = _differences(original, manifest, cfg)
    console.print(f"Reproducing {original.root} into {output}.", markup=False)
    for line in env:
        console.print(f"warning: environment differs: {line}", markup=False)
    for line in inputs:
        console.print(f"warning: {line}", markup=False)
    if not env and not inputs:
        console.print("The environment, the data and the base model match the record.", markup=False)
    argv = ["reproduce", str(run_dir), "--output-dir", str(output)]
    new = execute(cfg, RunOptions(yes=True, argv=argv), console,
                  lambda rows: print_rows(console, rows, "smolforge reproduce") or True)
    print_summary(console, new)
    return _judge(original, new, manifest, env, inputs, console)


def _judge(original: RunFolder, new: RunFolder, manifest: dict[str, Any], env: list[str], inputs: list[str],
           console) -> RunFolder:
    before, after = original.read_results(), new.read_results()
    exact = (manifest["environment"].get("device") or {}).get("device") == "cpu" and \
        (after.get("hardware") or {}).get("device") == "cpu"
    later = later_variants(before, list(new.read_config().quantize.methods))
    rows = compare_numbers(before, after, exact, later)
    weights = compare_weights(original.model_dir, new.model_dir)
    reproduced = _verdict(rows, weights, exact)
    _print_rows(console, rows, weights, exact)
    judged = [r for r in rows if r.judged]
    record = {
        "of": str(original.root), "reproduced": reproduced, "exact": exact,
        "rule": "compared exactly (both runs trained on a CPU, which is bit-reproducible)" if exact else
                f"compared within {GPU_RTOL:.0%} relative (GPU kernels may sum in a different order)",
        "numbers": len(judged), "numbers_matching": sum(r.match for r in judged),
        "mismatches": [{"name": r.name, "original": r.original, "reproduced": r.reproduced}
                       for r in judged if not r.match],
        "weights": {"tensors": weights.tensors, "identical": weights.identical,
                    "max_abs_diff": weights.max_abs_diff, "missing": weights.missing},
        "environment_differences": env, "input_differences": inputs,
        "later_additions": [f"{m} (made by a later smolforge quantize; not re-run)" for m in later],
    }
    new.update_results(reproduction=record)
    refresh_card(new, new.read_config(), console, username=None)
    if not reproduced:
        raise NotReproduced(f"{new.root} did not reproduce {original.root}: "
                            f"{len(record['mismatches'])} of {len(judged)} numbers differ"
                            + (f", {weights.tensors - weights.identical} of {weights.tensors} weight tensors differ"
                               if weights.identical != weights.tensors else "")
                            + (f"; the data or base model changed ({'; '.join(inputs)})" if inputs else "")
                            + f". Compare them with: diff <(jq . {shlex.quote(str(original.results_path))}) "
                              f"<(jq . {shlex.quote(str(new.results_path))})")
    console.print(f"Reproduced: all {len(judged)} numbers on the card and all {weights.tensors} weight tensors "
                  f"{'are bit-identical' if exact else f'agree within {GPU_RTOL:.0%}'}.", markup=False)
    if later:
        console.print(f"Not re-run: {', '.join(later)} (made by a later `smolforge quantize` of {original.root}; "
                      f"make them for the re-run with `smolforge quantize {new.root} --method ...`).", markup=False)
    return new


def _print_rows(console, rows: list[Row], weights: WeightsCheck, exact: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="smolforge reproduce", show_header=True)
    table.add_column("Number on the card", overflow="fold")
    for name in ("Original", "Reproduced", "Match"):  # a number is never cut across lines: the name column folds
        table.add_column(name, no_wrap=True)
    for r in rows:
        verdict = ("yes" if r.match else "NO") if r.judged else "(added later)" if r.later else "(measured, varies)"
        table.add_row(Text(r.name), Text(_fmt(r.original)), Text(_fmt(r.reproduced)), Text(verdict))
    same = weights.identical == weights.tensors and not weights.missing
    table.add_row(Text("weights (tensors identical)"), Text(str(weights.tensors)), Text(str(weights.identical)),
                  Text("yes" if weights.match(exact) else "NO") if same or not exact else Text("NO"))
    console.print(table)
