"""Indexing on a Ray cluster: decode as CPU tasks, embed on actors that hold the model, stream the vectors back.

The owner process stays the only writer: it scans, plans and commits exactly as a local run (indexer/runner.py).
This module only moves the two expensive stages. A Ray Data pipeline decodes, resamples and cuts the changed
files in CPU tasks (each file in a decoder subprocess, as locally, so a crash or a hang costs that file), embeds
the windows on an actor pool that holds the model (one GPU per actor where the cluster has GPUs, CPU actors
otherwise) and streams the embedded windows back; no audio returns to the owner.

Rows are keyed by (file, start sample): a task Ray retries after a lost node sends windows the owner already
has, and they are dropped here, so nothing is embedded twice into the index. A file is handed to the commit
only when its "done" row has arrived together with every window it announced.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from indexer.decode_workers import (
    DecodeJob,
    DecodePool,
    FileDecoded,
    FileFailed,
    FileOpened,
    WindowsDecoded,
    WindowsEmbedded,
)
from indexer.errors import SoundsiftError

RAY_MISSING = "Ray is not installed here: pip install 'soundsift[ray]' (on the owner and on every node of the cluster)"
# What workers must see to load the same plugins and model cache as the owner.
FORWARDED_ENV = (
    "SOUNDSIFT_PLUGINS",
    "SOUNDSIFT_EXTRA_PLUGINS",
    "SOUNDSIFT_DEBUG",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
)
WINDOWS_PER_BLOCK = 16  # decoded windows per output block of a decode task (about 30 MB of 48 kHz audio)
MAX_FILES_PER_TASK = 64
DECODE_TASK_MEMORY = 512 * 2**20  # a decode task's blocks of audio plus its decoder subprocess


class ClusterError(SoundsiftError):
    """The Ray cluster cannot be reached or cannot run the job (a plugin or the model missing on a worker)."""


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(RAY_MISSING) from None
    return ray


def connect(address: str | None) -> str:
    """Join Ray from this process and return the address used.

    ``auto`` (or empty) joins the cluster this machine belongs to (RAY_ADDRESS, or one started with
    `ray start` here) and, when there is none, starts a Ray of its own on this machine; anything else
    is a cluster address (``host:6379``, ``ray://host:10001``).
    """
    ray = require_ray()
    address = (address or "auto").strip()
    if ray.is_initialized():
        return address
    import logging

    kwargs = dict(logging_level=logging.WARNING, log_to_driver=bool(os.environ.get("SOUNDSIFT_DEBUG")))
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **kwargs)
            except ConnectionError:
                ray.init(include_dashboard=False, **kwargs)  # no cluster here: a Ray of this process's own
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({first[:200]}); start one with "
            "`ray start --head` or pass --ray with the address it printed"
        ) from None
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return address


def node_name() -> str:
    """This process's host and Ray node id (short), as reports name where a stage ran."""
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()[:8]
    except Exception:
        node = "local"
    return f"{socket.gethostname()}/{node}"


# -- plugins on the workers ------------------------------------------------------------------
def required_plugins(plugins) -> dict:
    """What a worker must load: the plugins that register decoders or taggers, and those objects' names."""
    wanted = [
        n for n in plugins.plugin_names() if {"register_decoders", "register_window_taggers"} & set(plugins.hooks_of(n))
    ]
    return {"plugins": wanted, "decoders": sorted(plugins.decoders), "taggers": sorted(plugins.taggers)}


_WORKER_PLUGINS = None


def worker_plugins():
    """The plugin host of this worker process (built once, from the same built-ins and entry points)."""
    global _WORKER_PLUGINS
    if _WORKER_PLUGINS is None:
        from plugins.manager import build_plugin_manager

        _WORKER_PLUGINS = build_plugin_manager()
    return _WORKER_PLUGINS


def check_worker_plugins(required: dict) -> None:
    """Raise ClusterError naming every plugin (or decoder, tagger) the owner loaded and this worker did not."""
    host = worker_plugins()
    loaded = set(host.plugin_names())
    failures = {f.name: f.error for f in host.failures}
    missing = [f"{n} ({failures[n]})" if n in failures else n for n in required["plugins"] if n not in loaded]
    missing += [f"decoder {d!r}" for d in required["decoders"] if d not in host.decoders and not missing]
    missing += [f"tagger {t!r}" for t in required["taggers"] if t not in host.taggers and not missing]
    if missing:
        raise ClusterError(
            f"plugin {', '.join(missing)} is loaded by the owner but missing on Ray worker {node_name()}: install the "
            "same package on every node (its 'soundsift' entry point is how workers find it), or narrow "
            "SOUNDSIFT_PLUGINS on the owner"
        )


# -- the decode stage (CPU tasks) ------------------------------------------------------------
def _empty_rows() -> dict[str, list]:
    return {"file_idx": [], "kind": [], "start": [], "length": [], "audio": [], "info": [], "decoded_on": []}


def _as_block(rows: dict[str, list]) -> dict[str, np.ndarray]:
    out = {k: np.array(v, dtype=object) for k, v in rows.items()}
    for k in ("file_idx", "start", "length"):
        out[k] = np.array(rows[k], dtype=np.int64)
    return out


def decode_files(batch: dict[str, np.ndarray], job: DecodeJob, timeout_s: float, required: dict) -> Iterator[dict]:
    """Ray Data task: decode a few files in a decoder subprocess and yield window rows (48 kHz float32 bytes, unpadded).

    Every file yields an "opened" row, its "window" rows and a "done" row announcing its window count, or a
    "failed" row with the reason (a crash or hang of the decoder fails the file, not the task).
    """
    import multiprocessing as mp

    check_worker_plugins(required)
    try:
        mp.set_forkserver_preload(["indexer.decode_workers", "plugins.manager"])
    except Exception:
        pass
    where = node_name()
    idxs = [int(i) for i in batch["file_idx"]]
    paths = [str(p) for p in batch["path"]]
    counts: Counter[int] = Counter()
    rows = _empty_rows()

    def add(file_idx: int, kind: str, start: int = 0, length: int = 0, audio: bytes = b"", info: dict | None = None):
        rows["file_idx"].append(file_idx)
        rows["kind"].append(kind)
        rows["start"].append(start)
        rows["length"].append(length)
        rows["audio"].append(audio)
        rows["info"].append(json.dumps(info or {}))
        rows["decoded_on"].append(where)

    pool = DecodePool(job, workers=1, timeout_s=timeout_s, start_method="forkserver")
    for event in pool.run(paths):
        file_idx = idxs[event.file_idx]
        if isinstance(event, FileOpened):
            info = asdict(event)
            info.pop("file_idx")
            add(file_idx, "opened", info=info)
        elif isinstance(event, WindowsDecoded):
            for start, length, audio in zip(event.starts, event.lengths, event.audio):
                add(file_idx, "window", int(start), int(length), np.ascontiguousarray(audio[:length]).tobytes())
                counts[file_idx] += 1
        elif isinstance(event, FileDecoded):
            add(file_idx, "done", info={"windows": counts[file_idx], "samples": int(event.samples)})
        elif isinstance(event, FileFailed):
            add(file_idx, "failed", info={"reason": event.reason})
        if sum(1 for k in rows["kind"] if k == "window") >= WINDOWS_PER_BLOCK:
            yield _as_block(rows)
            rows = _empty_rows()
    if rows["kind"]:
        yield _as_block(rows)


# -- the embed stage (actors holding the model) ----------------------------------------------
@dataclass(frozen=True)
class EmbedSpec:
    """What an embedding actor loads and checks: the owner's model, on this device, in sub-batches."""

    model: str
    revision: str | None
    fingerprint: str
    device: str
    precision: str
    window_s: float
    hop_s: float
    window: int
    batch_size: int  # 0: chosen from the actor's device
    required: dict = field(default_factory=dict)


class EmbedWindows:
    """Ray Data actor: loads the model once, embeds window rows and tags them; other rows pass through."""

    def __init__(self, spec: EmbedSpec):
        from indexer.errors import ModelMismatch
        from indexer.model import load_clap
        from indexer.runner import auto_batch_size

        check_worker_plugins(spec.required)
        self.spec = spec
        self.encoder = load_clap(spec.model, spec.revision, spec.device, spec.precision, spec.window_s, spec.hop_s)
        if self.encoder.identity.fingerprint != spec.fingerprint:
            raise ModelMismatch(
                f"Ray worker {node_name()} loaded {self.encoder.identity.describe()} for {spec.model}, "
                f"but the index was built with fingerprint {spec.fingerprint[:12]}: give every node "
                "the same checkpoint"
            )
        self.taggers = list(worker_plugins().taggers.values())
        self.batch = spec.batch_size or auto_batch_size(self.encoder)
        self.where = f"{node_name()}:{self.encoder.device}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from indexer.runner import tag_windows

        kinds = batch["kind"]
        n, dim, window = len(kinds), self.encoder.embedding_dim, self.spec.window
        vectors = np.zeros((n, dim), dtype=np.float32)
        tags = [""] * n
        todo = [i for i in range(n) if kinds[i] == "window"]
        for at in range(0, len(todo), self.batch):
            part = todo[at : at + self.batch]
            rows = []
            for i in part:
                audio = np.zeros(window, dtype=np.float32)
                samples = np.frombuffer(batch["audio"][i], dtype=np.float32)
                audio[: len(samples)] = samples
                rows.append((0, int(batch["start"][i]), int(batch["length"][i]), audio))
            padded = np.stack(
                [r[3] if r[2] >= window else self.encoder.features.repeat_pad(r[3][: r[2]]) for r in rows]
            )
            for i, tag in zip(part, tag_windows(self.taggers, rows, window)):
                tags[i] = json.dumps(tag)
            vectors[part] = self.encoder.embed_waveforms(torch.from_numpy(padded))
        return {
            "file_idx": batch["file_idx"],
            "kind": kinds,
            "start": batch["start"],
            "length": batch["length"],
            "info": batch["info"],
            "decoded_on": batch["decoded_on"],
            "vector": vectors,
            "tags": np.array(tags, dtype=object),
            "embedded_on": np.array([self.where] * n, dtype=object),
        }


# -- the owner's side ------------------------------------------------------------------------
@dataclass
class _FileState:
    opened: bool = False
    expected: int | None = None
    done_info: dict | None = None
    starts: set = field(default_factory=set)
    finished: bool = False


def _unwrap(exc: BaseException) -> SoundsiftError | None:
    """The SoundsiftError a worker raised, rebuilt plain from inside Ray's wrappers (RayTaskError, UserCodeException)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, SoundsiftError) and not isinstance(cause, SoundsiftError):
            # Ray's wrapper class derives from the cause's class; rebuild the plain one with its own message.
            cls = next(
                c
                for c in type(e).__mro__
                if issubclass(c, SoundsiftError) and c.__module__.split(".")[0] in ("indexer", "search", "plugins")
            )
            message = str(e.args[0] if e.args else e).strip()
            return cls(message.splitlines()[0] if message else cls.__name__)  # Ray Data appends its retry advice
        stack.extend([cause, e.__cause__, e.__context__])
    return _from_message(exc)


# "indexer.ray_pipeline.ClusterError: plugin x ... missing on Ray worker ..." in a traceback Ray formatted as text
_RAISED_LINE = re.compile(r"^\s*((?:indexer|search|plugins)(?:\.\w+)+)\.(\w+): (.+)$", re.MULTILINE)


def _from_message(exc: BaseException) -> SoundsiftError | None:
    """The SoundsiftError named in the text of Ray's error: an actor whose ``__init__`` raised reaches the owner as an
    ActorDiedError that keeps only the worker's traceback as text, not the exception."""
    import importlib

    for module_name, class_name, message in reversed(_RAISED_LINE.findall(str(exc))):
        try:
            cls = getattr(importlib.import_module(module_name), class_name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, SoundsiftError):
            return cls(message.strip())
    return None


class RayPipeline:
    """Decode and embed a run's changed files on a Ray cluster; the owner's IndexRunner commits what streams back."""

    def __init__(self, address: str | None, settings, encoder, plugins):
        self.address = address or "auto"  # joined on first use: a run with nothing to decode never touches Ray
        self.settings = settings
        self.identity = encoder.identity
        self.plugins = plugins
        self._decoded: Counter[str] = Counter()
        self._embedded: Counter[str] = Counter()
        self._layout: dict = {}

    def _layout_for(self, files: int) -> dict:
        import ray

        resources = ray.cluster_resources()
        nodes = max(1, sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        gpus = int(resources.get("GPU", 0))
        device = self.settings.device
        use_gpu = gpus > 0 and (device == "auto" or str(device).startswith("cuda"))
        actors = gpus if use_gpu else max(1, cpus - nodes)  # CPU actors leave one core per node to decode
        # One core in all: the actor takes no CPU slot, or no decode task could ever be scheduled beside it.
        actor_cpus = 0 if use_gpu or cpus < 2 else 1
        decode_cpus = max(1, cpus - actors * actor_cpus)
        per_task = max(1, min(MAX_FILES_PER_TASK, math.ceil(files / (4 * decode_cpus))))
        return {
            "cpus": cpus,
            "gpus": gpus,
            "nodes": nodes,
            "use_gpu": use_gpu,
            "actors": actors,
            "actor_cpus": actor_cpus,
            "device": "cuda"
            if use_gpu
            else ("cpu" if device in ("auto", "cuda") or str(device).startswith("cuda") else device),
            "files_per_task": per_task,
        }

    def dataset(self, job: DecodeJob, paths: list[str], runner):
        """The Ray Data pipeline over ``paths``: decode tasks, then the embedding actor pool."""
        import ray
        from ray.data import ActorPoolStrategy, DataContext

        self.address = connect(self.address)
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # the owner shows its own progress bar
        layout = self._layout = self._layout_for(len(paths))
        required = required_plugins(self.plugins)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        remote = {"runtime_env": {"env_vars": env}} if env else {}  # the owner's plugin selection, on every worker
        items = [{"file_idx": i, "path": p} for i, p in enumerate(paths)]
        per_task = layout["files_per_task"]
        ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / per_task)))
        # A task lost with its node runs again elsewhere (Ray Data retries tasks; the rows it sends twice are
        # dropped here). Its memory request also keeps Ray Data from fusing decoding into the embedding actors.
        ds = ds.map_batches(
            decode_files,
            batch_size=per_task,
            batch_format="numpy",
            num_cpus=1,
            memory=DECODE_TASK_MEMORY,
            fn_kwargs={"job": job, "timeout_s": self.settings.decode_timeout_s, "required": required},
            **remote,
        )
        spec = EmbedSpec(
            model=self.identity.model_id,
            revision=self.settings.model_revision,
            fingerprint=self.identity.fingerprint,
            device=layout["device"],
            precision=self.settings.precision,
            window_s=self.settings.window_s,
            hop_s=self.settings.hop_s,
            window=runner.window,
            batch_size=self.settings.batch_size,
            required=required,
        )
        resources = {"num_gpus": 1, "num_cpus": 0} if layout["use_gpu"] else {"num_cpus": layout["actor_cpus"]}
        return ds.map_batches(
            EmbedWindows,
            fn_constructor_kwargs={"spec": spec},
            batch_format="numpy",
            batch_size=max(self.settings.batch_size or (64 if layout["use_gpu"] else 8), 1),
            compute=ActorPoolStrategy(min_size=1, max_size=layout["actors"]),
            **resources,
            **remote,
        )

    def events(self, job: DecodeJob, paths: list[str], runner) -> Iterator:
        """Decode events for ``paths`` as the runner's loop takes them, windows arriving already embedded."""
        if getattr(runner, "classifiers", None):
            names = ", ".join(str(getattr(c, "model_id", None) or getattr(c, "name", "?")) for c in runner.classifiers)
            raise ClusterError(
                f"model taggers ({names}) run only in a local run for now: index without --ray, or without them"
            )
        states = {i: _FileState() for i in range(len(paths))}
        ds = self.dataset(job, paths, runner)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                yield from self._batch_events(batch, states)
        except Exception as exc:
            found = _unwrap(exc)
            if found is not None:
                raise found from None
            raise
        for i, state in states.items():  # defensive: a file the stream never finished is recorded, not lost
            if not state.finished:
                yield FileFailed(i, "the cluster returned no result for this file")

    def _batch_events(self, batch: dict[str, np.ndarray], states: dict[int, _FileState]) -> Iterator:
        kinds, idxs = batch["kind"], batch["file_idx"]
        windows: dict[int, list[int]] = {}
        for r in range(len(kinds)):
            i, kind = int(idxs[r]), str(kinds[r])
            state = states[i]
            if state.finished:
                continue  # a retried task's rows for a file already handed over
            if kind == "window":
                start = int(batch["start"][r])
                if start not in state.starts:
                    state.starts.add(start)
                    windows.setdefault(i, []).append(r)
                    self._embedded[str(batch["embedded_on"][r])] += 1
            elif kind == "opened" and not state.opened:
                state.opened = True
                info = json.loads(batch["info"][r])
                self._decoded[str(batch["decoded_on"][r])] += 1
                yield FileOpened(
                    i,
                    info["decoder"],
                    info["sample_rate"],
                    info["channels"],
                    info["duration_s"],
                    info["codec"],
                    info.get("warnings") or [],
                )
            elif kind == "done" and state.expected is None:
                state.done_info = json.loads(batch["info"][r])
                state.expected = int(state.done_info["windows"])
            elif kind == "failed":
                state.finished = True
                yield FileFailed(i, json.loads(batch["info"][r])["reason"])
        for i, rows in windows.items():
            if states[i].finished:
                continue
            yield WindowsEmbedded(
                i,
                np.array([batch["start"][r] for r in rows], dtype=np.int64),
                np.array([batch["length"][r] for r in rows], dtype=np.int64),
                np.asarray(batch["vector"][rows], dtype=np.float32),
                [json.loads(batch["tags"][r]) for r in rows],
            )
        for i in {int(x) for x in idxs}:
            state = states[i]
            if (
                not state.finished
                and state.opened
                and state.expected is not None
                and len(state.starts) == state.expected
            ):
                state.finished = True
                yield FileDecoded(i, int((state.done_info or {})["samples"]))

    def stages(self) -> dict:
        """Where each stage of the last run ran (the report's ``stages``)."""
        layout = self._layout
        return {
            "cluster": self.address,
            "decode": {"on": "ray tasks", "cpus": layout.get("cpus"), "files_by_node": dict(self._decoded)},
            "embed": {
                "on": "ray actors",
                "device": layout.get("device"),
                "actors_max": layout.get("actors"),
                "windows_by_actor": dict(self._embedded),
            },
            "commit": {"on": "owner", "node": socket.gethostname(), "pid": os.getpid()},
        }


def cluster_for(settings, encoder, plugins) -> RayPipeline | None:
    """The pipeline to index through when settings name a cluster (``--ray``), else None (a local run)."""
    if not getattr(settings, "ray", None):
        return None
    return RayPipeline(settings.ray, settings, encoder, plugins)
