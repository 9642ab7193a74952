"""Importer for the OLMo-ladder W&B exports (Bhagia et al. 2024): one CSV per training run.

File names are ``{size}-{length}.csv`` (``-rerun`` marks the independent second run of 1xC) plus,
when present, the two target logs ``peteish7_eval_anneal.csv`` and ``peteish13_eval_final.csv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch

from bayesladder import schema
from bayesladder.errors import BayesLadderError
from bayesladder.importers.tables import Problems, numeric_column, read_csv_strict, require_columns
from bayesladder.targets import KNOWN_TARGETS

# N (the paper's convention: transformer blocks + input embedding) and global batch size per size.
SIZES = {
    "190M": (190_354_176, 524_288),
    "370M": (371_262_464, 786_432),
    "760M": (758_220_288, 1_310_720),
    "1B": (1_279_395_840, 1_572_864),
    "3B": (3_169_537_280, 3_145_728),
}
TARGET_FILES = {
    "peteish7_eval_anneal.csv": ("7B-4T", 4_194_304),
    "peteish13_eval_final.csv": ("13B-5T", 8_388_608),
}
N_PARAMS_CONVENTION = (
    "transformer blocks (attention, SwiGLU MLP, all RMSNorms) plus the input embedding matrix; "
    "the untied output projection is excluded (the OLMo-ladder paper's N)"
)
SCHEDULE = "linear warmup over N tokens, cosine decay to 0.1 x peak at the run's end"

MMLU_WEIGHTS = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    source_key: str
    splits: dict[str, float]  # source split id -> weight in the task's value
    n_questions: int
    chance: float
    accuracy_metric: str = "len_norm"


TASKS = [
    TaskSpec("mmlu", "mmlu_avg_test_5shot", {f"mmlu_{k}_test": w for k, w in MMLU_WEIGHTS.items()}, 14042, 1 / 4),
    TaskSpec("hellaswag", "hellaswag_val_5shot", {"hellaswag_val": 1.0}, 10042, 1 / 4),
    TaskSpec("arc_challenge", "arc_challenge_test_5shot", {"arc_challenge_test": 1.0}, 1172, 1 / 4),
    TaskSpec("arc_easy", "arc_easy_test_5shot", {"arc_easy_test": 1.0}, 2376, 1 / 4),
    TaskSpec("piqa", "piqa_val_5shot", {"piqa_val": 1.0}, 1838, 1 / 2),
    TaskSpec("csqa", "csqa_val_5shot", {"csqa_val": 1.0}, 1221, 1 / 5),
    TaskSpec("socialiqa", "socialiqa_val_5shot", {"socialiqa_val": 1.0}, 1954, 1 / 3),
    TaskSpec("openbookqa", "openbookqa_test_5shot", {"openbookqa_test": 1.0}, 500, 1 / 4),
    TaskSpec("boolq", "boolq_val_5shot", {"boolq_val": 1.0}, 3270, 1 / 2, accuracy_metric="acc"),
    TaskSpec("winogrande", "winogrande_val_5shot", {"winogrande_val": 1.0}, 1267, 1 / 2),
]
VALSETS = [
    "c4_en",
    "dolma_books",
    "dolma_common-crawl",
    "dolma_pes2o",
    "dolma_reddit",
    "dolma_stack",
    "dolma_wiki",
    "ice",
    "m2d2_s2orc",
    "pile",
    "wikitext_103",
]

RUN_FILE = re.compile(r"^(?P<size>[0-9.]+[MB])-(?P<mult>[0-9.]+)xC(?P<rerun>-rerun)?\.csv$")

# The public home of the same files, pinned to one commit and verified by SHA-256.
UPSTREAM = (
    "https://raw.githubusercontent.com/allenai/OLMo-ladder/"
    "67a3f440f787d020da35e3ca8eeae475fae754f5/src/scripts/paper/data/ladder-runs/"
)
UPSTREAM_SHA256 = {
    "190M-0.5xC.csv": "d4e9f80960149676352b61b739c4dca727bffee5e7a8f41919119365fcde0534",
    "190M-10xC.csv": "192b115c3f02b6503043280f8303c59f5b10897cd631f1b8ec6aea944d22faa6",
    "190M-1xC-rerun.csv": "50e635e970e4a29c838d644f942503f9ef6e0d78feb744055447413de42a3e2b",
    "190M-1xC.csv": "8ac0066547d5edec4d05d2b861a26c7faf591eef6971e11acba2450a45e69c27",
    "190M-2xC.csv": "db90c75f8d031d0754e7108f1a8d16f372603e0c04d2cb00cca08cf272ecf86a",
    "190M-5xC.csv": "aefe54fa03bd158d6da178b1eb2ece88cb0681bb32403845b6e544ae9e4e5dcf",
    "1B-0.5xC.csv": "7c44ecf10ddaeba4c5ceb26ac0db8b9454163c19903556238d3117685768126a",
    "1B-10xC.csv": "ec7e7487c67a774d9b919ec35121966ded7ae2ce5ede135f1d32f509f451476f",
    "1B-1xC-rerun.csv": "878e664acbb68df93b046a4242ccac12b321276e1f2fcbbbc6fa8779bd5eaa24",
    "1B-1xC.csv": "7fe91f0552829238e591e55c03f66b743ac5931388d9710457a845d92c2d9102",
    "1B-2xC.csv": "34ba12a08a52e10e89a71d88a5c13538c3df21e5e993c476cadb08eb4b2eb354",
    "1B-5xC.csv": "d195153f05b846f6d4f8ca95247d1f79d9d00e898d856b244b17e20431539ddb",
    "370M-0.5xC.csv": "04e12eec843bb7b8bf292ec8837edd8db63010469e457d145a1757d48a91bac9",
    "370M-10xC.csv": "3f25b4ec4035caeb71b787d165857667779dc3b92739c6379b8f8ce7079fcb58",
    "370M-1xC-rerun.csv": "e27c89356cc6c842585c0232bb3be20bd066c2d4f859d1a3c772c43e5b6887c7",
    "370M-1xC.csv": "3597a61872596affbb61e83f36c7cc3fe43485c3ed30ba6d658064b57edcea07",
    "370M-2xC.csv": "73c686e580ad0600ca12334bf22ab3dad3265583a948e3beaae5b79b9a20c137",
    "370M-5xC.csv": "199905d322b0332b69f1d0a40de9be43e5eb3cf576fc1d3031578cdea09708fa",
    "3B-0.5xC.csv": "35247d4ff9af52c11bdec95a31e069599f43564ba6094a3893b49d91aa258410",
    "3B-10xC.csv": "1ff388361b6d8e4548aaaaecd8a0437a21e28b9af11c4696225e322c8526e488",
    "3B-1xC-rerun.csv": "5c2b189aa82b964c4005fce327b42e9399110d297c83903d03d03d0892e11d7d",
    "3B-1xC.csv": "bd5dbad1b2942c58439006f77dba46ff2f66ad8760f8d709f9ced4fcb387bedb",
    "3B-2xC.csv": "b933055d54221855c893245331770c0e7314dea5203518640da88773d92d8e47",
    "3B-5xC.csv": "4b02c35ea9b3623402ac3a401dbc66ed827dcecede04343ea65cc2bbf6bfd962",
    "760M-0.5xC.csv": "a02cee96b21c78a6a9c71ba99ead71c454fc6561e50b778681ab1d7182df6cf6",
    "760M-10xC.csv": "e256c9df6d3b7af66bbcf4dc7ca84b45a812bd205b70648ca5177c8b74f6ff40",
    "760M-1xC-rerun.csv": "f5b2775ebc27c80f21e13e0bf35622007b8b30f09734ab0bb6f7e871bf33103b",
    "760M-1xC.csv": "a830185275c91cc077379540ec91a71b4bea6f191ca99a8090c851be19e7956d",
    "760M-2xC.csv": "8c1ad2bf7da390b9eed24af7b6eb12a6393cc077164d51b4e4740f7221f1193c",
    "760M-5xC.csv": "9c08b58d2625f427253bbd2079bad3a90726a66486154dd4f82ef84560e275ec",
    "peteish7_eval_anneal.csv": "0742d6c113aa0f9c789cf9e5745678fc6f30eb9b873a1f98068fc6f6522c85df",
    "peteish13_eval_final.csv": "8cbdd4c2818b05ff30476a9bd4ecae620da89193ca61183bc2d61e111a9d0059",
}


def download(cache_dir: str | Path | None = None) -> Path:
    """Fetch every upstream file into a user cache (verified by SHA-256) and return the folder."""
    import requests  # pooch's own dependency; only needed here

    fetcher = pooch.create(
        path=cache_dir or pooch.os_cache("bayesladder") / "olmo-ladder",
        base_url=UPSTREAM,
        registry={name: f"sha256:{digest}" for name, digest in UPSTREAM_SHA256.items()},
    )
    try:  # pooch refuses a progress bar without tqdm, which only the [train] extra installs
        import tqdm  # noqa: F401

        progressbar = True
    except ImportError:
        progressbar = False
    for name in UPSTREAM_SHA256:
        try:
            fetcher.fetch(name, progressbar=progressbar)
        except (ValueError, OSError, requests.RequestException) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BayesLadderError(
                f"downloading {name} from {UPSTREAM} failed ({reason}); check the network connection and retry, "
                "or pass a folder holding the CSV files instead of --download"
            ) from None
    return Path(fetcher.abspath)


def import_dir(directory: str | Path):
    """Read every run file (and target log) in ``directory`` into a ladder dataset."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BayesLadderError(f"{directory}: no such folder; pass the folder holding the OLMo-ladder CSV files")
    runs, columns, problems = [], [], []
    for path in sorted(directory.glob("*.csv")):
        try:
            parsed = _run_identity(path)
            if parsed is None:
                continue
            run, batch_size = parsed
            columns.append(_read_run(path, run, batch_size))
            runs.append(run)
        except BayesLadderError as exc:  # every bad file is reported, not only the first
            problems.append(str(exc))
    if problems:
        raise BayesLadderError("; ".join(problems))
    if not runs:
        raise BayesLadderError(
            f"{directory}: no OLMo-ladder files found; expected names like '190M-1xC.csv' "
            "(or use --download to fetch them)"
        )
    max_rows = max(len(c["tokens"]) for c in columns)

    def stack(key, trailing=()):
        out = np.full((len(runs), max_rows, *trailing), np.nan)
        for i, c in enumerate(columns):
            out[i, : len(c[key])] = c[key]
        return out

    return schema.build_dataset(
        runs=runs,
        tasks=[
            {"name": t.name, "n_questions": t.n_questions, "chance": t.chance, "source_key": t.source_key}
            for t in TASKS
        ],
        task_loss=stack("task_loss", (len(TASKS),)),
        accuracy=stack("accuracy", (len(TASKS),)),
        tokens=stack("tokens"),
        step=stack("step"),
        val_loss=stack("val_loss", (len(VALSETS),)),
        valsets=VALSETS,
        producer=f"bayesladder import olmo-ladder {directory}",
        n_params_convention=N_PARAMS_CONVENTION,
    )


def _run_identity(path: Path) -> tuple[dict, float | None] | None:
    """The run's metadata from its file name, or None for a file that is not an OLMo-ladder log."""
    if path.name in TARGET_FILES:
        name, batch_size = TARGET_FILES[path.name]
        target = KNOWN_TARGETS[name]
        run = dict(
            name=name,
            size=name.split("-")[0],
            length=name.split("-")[1],
            multiplier=target.tokens / (20 * target.n_params),
            replicate=0,
            n_params=target.n_params,
            role="target",
            source=path.name,
            schedule="OLMo 2 recipe",
        )
        return run, batch_size
    match = RUN_FILE.match(path.name)
    if match is None:
        return None
    size = match["size"]
    if size not in SIZES:
        raise BayesLadderError(f"{path}: unknown model size '{size}'; known sizes are {', '.join(SIZES)}")
    n_params, batch_size = SIZES[size]
    length = f"{match['mult']}xC"
    run = dict(
        name=path.stem,
        size=size,
        length=length,
        multiplier=float(match["mult"]),
        replicate=1 if match["rerun"] else 0,
        n_params=n_params,
        role="ladder",
        source=path.name,
        schedule=SCHEDULE,
    )
    return run, batch_size


def _read_run(path: Path, run: dict, batch_size: float) -> dict[str, np.ndarray]:
    table = read_csv_strict(path)
    metric_columns = []
    for task in TASKS:
        for split in task.splits:
            metric_columns += [_loss_column(split), _accuracy_column(split, task)]
    require_columns(table, metric_columns, path)
    problems = Problems(path)

    def column(name, allow_empty=True):
        return numeric_column(table, name, problems, allow_empty=allow_empty)

    has_total = "throughput/total_tokens" in table.columns
    step = column("_step", allow_empty=has_total) if "_step" in table.columns else np.full(len(table), np.nan)
    if has_total:
        tokens = column("throughput/total_tokens", allow_empty=False)
    elif "_step" in table.columns:
        tokens = step * batch_size
    elif run["role"] == "target" and len(table) == 1:
        tokens = np.array([KNOWN_TARGETS[run["name"]].tokens])
    else:
        raise BayesLadderError(f"{path}: needs a 'throughput/total_tokens' or '_step' column to know the tokens D")
    problems.add_rows(table, tokens <= 0, None, "tokens D must be a positive number")
    loss = np.stack([sum(w * column(_loss_column(s)) for s, w in t.splits.items()) for t in TASKS], axis=-1)
    acc = np.stack([sum(w * column(_accuracy_column(s, t)) for s, w in t.splits.items()) for t in TASKS], axis=-1)
    val = np.stack(
        [
            column(c)
            if (c := f"eval/{v}-validation/CrossEntropyLoss") in table.columns
            else np.full(len(table), np.nan)
            for v in VALSETS
        ],
        axis=-1,
    )
    problems.raise_if_any()
    return {"task_loss": loss, "accuracy": acc, "tokens": tokens, "step": step, "val_loss": val}


def _loss_column(split: str) -> str:
    return f"eval/downstream_bpb/{split}_rc_5shot_bpb"


def _accuracy_column(split: str, task: TaskSpec) -> str:
    return f"eval/downstream/{split}_rc_5shot_{task.accuracy_metric}"
