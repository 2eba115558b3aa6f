"""`smolforge skypilot`: a SkyPilot task that runs `smolforge run` on rented GPUs (a cloud, a Kubernetes
cluster, a GPU marketplace), one node or several.

What goes up: the config and every local file or folder the run reads (data, a local base model, the tools
file, reward functions, evaluation task files and their data, a card template), each mounted on every node
under INPUTS at its own absolute path, so the paths between them hold (a task's data beside its YAML); the
nodes run in the mirror of this working directory, so relative paths in the config resolve as they do here,
and a setting whose value is an absolute path is pointed at the mirror with --set. smolforge itself goes up
as a wheel built from the running installation (or the pip requirement given with --install); setup installs
it with its pinned dependencies and PyPI's (CUDA) build of torch into a virtualenv on each node.

The run folder is RUNS/<experiment>: a bucket mounted there (--output-bucket, rclone-cached so checkpoints,
logs and appends work) keeps the card and checkpoints after the cluster is gone and is the one folder every
node shares; without a bucket it is node 0's disk (one node only), copied back with rsync. Secrets are
declared by name (`secrets: {HF_TOKEN: null}`) and given to `sky launch --secret`, never written here.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata, resources
from pathlib import Path, PurePosixPath

from smolforge.builtin_data import BUILTIN_FILES
from smolforge.config import SmolforgeConfig
from smolforge.config.outputs import GGUF_METHODS, NAMED_TASKS
from smolforge.config.training import split_reward
from smolforge.data.sources import check_source, is_local_source
from smolforge.errors import SmolforgeError
from smolforge.launchers.common import (
    DEFAULT_PORT,
    LaunchRequest,
    RunFacts,
    node_command,
    resolve_run,
    run_secrets,
    run_words,
    topology_problems,
)
from smolforge.resume import default_run_folder

TEMPLATE = "resources/skypilot.yaml.j2"
INPUTS = "/smolforge/inputs"  # local inputs, each at INPUTS + its absolute path here
RUNS = "/smolforge/runs"      # run folders: the bucket's mount, or node 0's disk
DIST = "/smolforge/dist"      # the smolforge wheel the nodes install
ENV = "$HOME/smolforge-env"   # the virtualenv setup creates on each node

# The `infra` names SkyPilot 0.14's task schema accepts (each may add /region[/zone], Kubernetes /context);
# tests/unit/test_skypilot.py checks this list against the installed SkyPilot's own schema.
INFRA = ("aws", "azure", "gcp", "ibm", "lambda", "scp", "oci", "runpod", "vast", "vsphere", "cudo", "fluidstack",
         "paperspace", "primeintellect", "do", "nebius", "ssh", "slurm", "hyperbolic", "seeweb", "shadeform",
         "yotta", "mithril", "verda", "kubernetes", "k8s")
# Bucket URLs SkyPilot mounts (https:// is an Azure blob container: https://ACCOUNT.blob.core.windows.net/NAME).
BUCKET = re.compile(r"(s3|gs|r2|cos|oci|nebius)://[a-z0-9][a-z0-9._-]{1,62}(/[^\s'\"]*)?"
                    r"|https://[a-z0-9]+\.blob\.core\.windows\.net/[a-z0-9][a-z0-9-]{1,62}(/[^\s'\"]*)?")
_ACCELERATOR = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)(?::(\d+))?")
_CLUSTER = re.compile(r"[^a-z0-9-]+")
# SkyPilot's GPU names -> the plan's table, for the memory check (other names are not checked)
PLAN_GPUS = {"H100": "h100", "H200": "h200", "B200": "b200", "A100-80GB": "a100-80gb", "A100": "a100-40gb",
             "L40S": "l40s", "A10": "a10", "L4": "l4", "RTX4090": "rtx-4090", "T4": "t4", "MI300X": "mi300x"}


@dataclass
class SkyRequest(LaunchRequest):
    accelerator: str = ""  # SkyPilot's GPU name, e.g. H100
    infra: str | None = None
    use_spot: bool = False
    output_bucket: str | None = None
    disk_size: int = 256
    install: str | None = None  # a pip requirement for smolforge on the nodes; None: a wheel of this installation
    output: Path | None = None
    force: bool = False


def parse_gpus(text: str) -> tuple[str, int]:
    """`H100:8` -> ("H100", 8); `L4` -> ("L4", 1)."""
    match = _ACCELERATOR.fullmatch(text.strip())
    if not match or (match.group(2) is not None and int(match.group(2)) < 1):
        raise SmolforgeError(f"smolforge skypilot: --gpus {text!r} is not a GPU request: write NAME:COUNT, the GPUs of "
                             "one node, e.g. --gpus H100:8 or --gpus L4:1 (names as `sky show-gpus` lists them).")
    return match.group(1), int(match.group(2) or 1)


def _check_options(req: SkyRequest) -> None:
    problems = topology_problems(req, "--nodes", "--gpus", "the task", "node rank and rendezvous come from SkyPilot")
    if req.infra is not None:
        head = req.infra.split("/", 1)[0].lower()
        if head not in INFRA or not re.fullmatch(r"[A-Za-z0-9-]+(/[^\s/]+){0,2}", req.infra):
            problems.append(f"--cloud {req.infra!r} is not an infra SkyPilot knows: use one of {', '.join(INFRA)}, "
                            "optionally with /region (e.g. aws/us-east-1) or a Kubernetes /context")
    if req.output_bucket is not None and not BUCKET.fullmatch(req.output_bucket.rstrip("/")):
        problems.append(f"--output-bucket {req.output_bucket!r} is not a bucket URL: use s3://NAME[/PATH], "
                        "gs://NAME[/PATH], r2://, cos://, oci://, nebius:// or https://ACCOUNT.blob.core.windows.net/"
                        "CONTAINER (lower-case bucket names)")
    if not req.output_bucket and req.nodes > 1:
        problems.append(f"--nodes {req.nodes} needs --output-bucket: every node reads and writes the one run folder, "
                        "and a bucket mounted on all of them is that folder (a node's own disk is not shared)")
    if not req.output_bucket and req.use_spot:
        problems.append("--use-spot needs --output-bucket: a preempted job restarts on new machines and resumes "
                        "from the checkpoints in the bucket (a node's disk goes with the machine)")
    if not 10 <= req.disk_size <= 65536:
        problems.append(f"--disk-size {req.disk_size} must be between 10 and 65536 GB")
    if problems:
        raise SmolforgeError("smolforge skypilot: " + "; ".join(problems) + ".")


@dataclass
class Upload:
    """A local file or folder the nodes read, mounted at INPUTS + its absolute path."""

    local: Path
    what: str  # the setting that reads it, or "config"

    @property
    def remote(self) -> str:
        return remote_path(self.local)

    @property
    def size(self) -> int:
        if self.local.is_file():
            return self.local.stat().st_size
        return sum(p.stat().st_size for p in self.local.rglob("*") if p.is_file())


def remote_path(local: Path) -> str:
    return INPUTS + PurePosixPath(local.resolve().as_posix()).as_posix()


def _local(value: str) -> Path:
    return Path(value).expanduser()


def _mapped(value: str) -> str:
    """A setting's path value as the nodes see it: absolute ones point at the mirror, relative ones stay (the
    nodes run in the mirror of this working directory)."""
    path = _local(value)
    return remote_path(path) if path.is_absolute() else value


@dataclass
class Inputs:
    uploads: list[Upload] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)  # --set items pointing absolute paths at the mirror

    def add(self, path: Path, what: str) -> None:
        self.uploads.append(Upload(path.resolve(), what))

    def one(self, key: str, value: str | None, must_exist: bool = True) -> None:
        if not value:
            return
        path = _local(value)
        if not path.exists():
            if must_exist:
                raise SmolforgeError(f"{key}: {value} does not exist here, and the task uploads it from this machine. "
                                     "Fix the path, or give a Hub id.")
            return
        self.add(path, key)
        if path.is_absolute():
            self.sets.append(f"{key}={_mapped(value)}")

    def many(self, key: str, values: list[str], local: Callable[[str], Path | None],
             files: Callable[[Path], list[Path]]) -> None:
        mapped, changed = [], False
        for value in values:
            path = local(value)
            if path is None:
                mapped.append(value)
                continue
            for file in files(path):
                self.add(file, key)
            new = value.replace(str(path), _mapped(str(path)), 1) if path.is_absolute() else value
            changed |= new != value
            mapped.append(new)
        if changed:
            self.sets.append(f"{key}={json.dumps(mapped)}")

    def distinct(self) -> list[Upload]:
        """Each path once; a file inside an uploaded folder goes up with the folder."""
        seen: dict[Path, Upload] = {}
        for up in self.uploads:
            seen.setdefault(up.local, up)
        folders = [p for p in seen if p.is_dir()]
        return [u for p, u in seen.items() if not any(f != p and f in p.parents for f in folders)]


def local_inputs(cfg: SmolforgeConfig, config: Path | None, task_files: Callable[[Path], list[Path]]) -> Inputs:
    """Every local file or folder the run reads, and the --set items that point absolute paths at the mirror.
    `task_files` lists what an evaluation task file reads (evaluation.taskfile.task_input_files)."""
    found = Inputs()
    if config is not None:
        found.add(config, "config")
    if not cfg.model.is_tiny:
        found.one("model.name_or_path", cfg.model.name_or_path, must_exist=False)  # not here: a Hub id
    if cfg.data.name not in BUILTIN_FILES and is_local_source(cfg.data.name):
        check_source(cfg.data)  # the message `smolforge run` stops with
        found.one("data.name", cfg.data.name)
    found.one("data.tools", cfg.data.tools)
    found.one("card.template", cfg.card.template)
    if cfg.card.license_link and "://" not in cfg.card.license_link:
        found.one("card.license_link", cfg.card.license_link, must_exist=False)

    def reward_file(name: str) -> Path | None:
        parts = split_reward(name)
        return _local(parts[0]) if parts else None

    found.many("training.grpo.rewards", cfg.training.grpo.rewards, reward_file, lambda p: [p])

    def task_file(name: str) -> Path | None:
        return None if name in NAMED_TASKS or not _local(name).is_file() else _local(name)

    found.many("evaluation.tasks", cfg.evaluation.tasks, task_file, task_files)
    return found


def extras(cfg: SmolforgeConfig) -> tuple[list[str], list[str]]:
    """smolforge's extras and the other packages the run imports on the nodes."""
    names = ["qlora"] if cfg.training.four_bit_base else []
    names += ["gguf"] if any(q in GGUF_METHODS for q in cfg.quantize) else []
    packages = [cfg.tracking.backend] if cfg.tracking.backend in ("wandb", "tensorboard") else []
    packages += ["liger-kernel"] if cfg.training.liger_kernel is True else []
    return names, packages


def _build_wheel(folder: Path) -> Path | None:
    """A wheel of the running smolforge when it is installed from a source tree (an editable install): what the
    nodes install, uncommitted changes included. None when it was installed from a package index."""
    dist = metadata.distribution("smolforge")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if not direct.get("dir_info", {}).get("editable") or not direct.get("url", "").startswith("file://"):
        return None
    source = Path(direct["url"][len("file://"):])
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("smolforge-*.whl"):
        old.unlink()
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "--wheel-dir", str(folder), str(source)], capture_output=True, text=True)
    wheels = sorted(folder.glob("smolforge-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise SmolforgeError(f"Could not build a wheel of smolforge from {source} for the nodes to install "
                             f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:] or 'no wheel written'}). "
                             "Give --install with a pip requirement the nodes can install instead.")
    return wheels[0]


def _torch_version() -> str:
    return metadata.version("torch").split("+")[0]  # this machine may have the +cpu build; the nodes get CUDA's


@dataclass
class Resolved:
    facts: RunFacts
    run_args: list[list[str]]
    run_dir: str           # on the nodes
    inputs: list[Upload]
    workdir: str           # this working directory's mirror on the nodes
    extras: list[str]      # smolforge's extras the run needs
    extra_packages: list[str]
    secrets: dict[str, str]
    install: str = ""      # the pip requirement setup installs smolforge from (set by `add_install`)
    install_upload: Path | None = None


def resolve(req: SkyRequest, task_files: Callable[[Path], list[Path]], cwd: Path | None = None) -> Resolved:
    """Check the options and the config for this topology; find what goes up and where the run folder is."""
    _check_options(req)
    cwd = (cwd or Path.cwd()).resolve()
    facts = resolve_run(req, cwd)
    config = (cwd / req.config).resolve() if req.config else None
    inputs = local_inputs(facts.cfg, config, task_files)
    names, packages = extras(facts.cfg)
    return Resolved(facts, run_words(req, facts, remote_path(config) if config else None, inputs.sets),
                    f"{RUNS}/{default_run_folder(facts.cfg).root.name}", inputs.distinct(), remote_path(cwd), names,
                    packages, run_secrets(facts.cfg))


def add_install(req: SkyRequest, resolved: Resolved, task_file: Path) -> None:
    """How the nodes install smolforge: --install as given (a local wheel goes up), else a wheel of this
    installation built beside the task file, else (installed from an index) the same version from the index."""
    suffix = f"[{','.join(resolved.extras)}]" if resolved.extras else ""
    if req.install is not None and not _local(req.install).is_file():
        resolved.install = req.install
        return
    upload = _local(req.install).resolve() if req.install else _build_wheel(task_file.parent /
                                                                             f"{task_file.stem}.dist")
    resolved.install_upload = upload
    resolved.install = f"{DIST}/{upload.name}{suffix}" if upload else \
        f"smolforge{suffix}=={metadata.version('smolforge')}"


def cluster_name(resolved: Resolved) -> str:
    """A SkyPilot cluster name from the run's name (lower-case letters, digits and dashes, starting with a
    letter)."""
    name = _CLUSTER.sub("-", Path(resolved.run_dir).name.lower()).strip("-")
    return ("sf-" + name)[:40].rstrip("-")


def _q(value: object) -> str:
    """A YAML scalar (JSON is YAML): paths with spaces or colons stay one value."""
    return json.dumps(value, ensure_ascii=False)


def _header(req: SkyRequest, resolved: Resolved, task_file: Path) -> list[str]:
    """The comment at the top of the task: how to launch it, where the results land, what goes up."""
    name = Path(resolved.run_dir).name
    lines = [f"A smolforge run as a SkyPilot task, written by `smolforge skypilot` on {datetime.now():%Y-%m-%d %H:%M}.",
             f"  Launch:      {launch_command(req, resolved, task_file)}"]
    for key, why in resolved.secrets.items():
        lines.append(f"               with {key} set in your shell ({why}): SkyPilot passes it to the nodes; this "
                     "file holds no value")
    lines.append(f"  Run folder:  {resolved.run_dir} on the nodes")
    if req.output_bucket:
        lines += [f"               kept in {req.output_bucket.rstrip('/')}/{name} after the cluster is gone; copy it "
                  f"back with the bucket's tool, e.g. into runs/{name}"]
    else:
        lines += ["               node 0's disk, gone with the cluster: copy it back before `sky down`:",
                  f"               rsync -Pavz {cluster_name(resolved)}:{resolved.run_dir}/ runs/{name}/"]
    uploads = [f"{u.local} ({u.what})" for u in resolved.inputs] or ["nothing but smolforge (no local inputs)"]
    lines += [f"  Uploaded:    {uploads[0]}", *(f"               {u}" for u in uploads[1:])]
    lines.append(f"Nodes x GPUs: {req.nodes} x {req.gpus_per_node} {req.accelerator}, one training process per GPU "
                 "(torchrun); the nodes meet at node 0, SkyPilot's head node.")
    if req.use_spot:
        lines.append("Spot: SkyPilot's managed jobs start a preempted job again; it continues from the last complete "
                     "checkpoint in the bucket.")
    return lines


def render(req: SkyRequest, resolved: Resolved, task_file: Path) -> str:
    """The task YAML's text."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = _q
    template = env.from_string(resources.files("smolforge").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    mounts = {u.remote: str(u.local) for u in resolved.inputs}
    if resolved.install_upload is not None:
        mounts[f"{DIST}/{resolved.install_upload.name}"] = str(resolved.install_upload)
    install = " ".join(shlex.quote(p) for p in [resolved.install, *resolved.extra_packages])
    return template.render(
        header=_header(req, resolved, task_file), req=req, name=Path(resolved.run_dir).name, runs=RUNS,
        mounts=mounts, secrets=resolved.secrets, torch=_torch_version(), env=ENV, install=install,
        gguf="gguf" in resolved.extras, workdir=shlex.quote(resolved.workdir),
        run_dir_q=shlex.quote(resolved.run_dir), port=req.port or DEFAULT_PORT,
        node_command=node_command(resolved.run_args, indent="  "))


def launch_command(req: SkyRequest, resolved: Resolved, task_file: Path) -> str:
    """What starts it: a managed job for spot (SkyPilot restarts it after a preemption), else a cluster that is
    taken down when the job ends if the results are in a bucket."""
    secrets = "".join(f" --secret {k}" for k in resolved.secrets)
    task = shlex.quote(str(task_file))
    if req.use_spot:
        return f"sky jobs launch -n {cluster_name(resolved)} {task}{secrets}"
    down = " --down" if req.output_bucket else ""
    return f"sky launch -c {cluster_name(resolved)} {task}{secrets}{down}"
