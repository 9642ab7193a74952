"""Fitting a design, and the fit as a file: an ArviZ DataTree in netCDF with its config in attrs.

A design's blocks share no parameter (``bayes.model``), so each is sampled on its own with nutpie, on every
core, with the mass-matrix adaptation its geometry needs (``BLOCK_SAMPLING``). The blocks' draws are then paired chain
by chain and draw by draw: they are independent, so every pairing is a draw from the joint posterior. Each block's
model is compiled by ``bayes.compilation``, which compiles a fit's later models ahead in a second process while the
compile cache lacks them.

A saved fit holds the posterior, the sampler statistics (with a ``block`` dimension), the data the model saw
(observed_data, constant_data) and, in attrs, the configuration, the dataset's content hash and path, the
package version and the diagnostics record. Loading refuses a fit whose configuration or dataset differs
from what the caller expects.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from bayesladder import __version__, schema
from bayesladder.bayes import compilation
from bayesladder.bayes.data import ModelData, step1_design
from bayesladder.bayes.priors import Prior, merge, to_json
from bayesladder.bayes.stacking import Calibration, calibrate, calibration_splits, nested_config
from bayesladder.errors import BayesLadderError
from bayesladder.extrapolation import Extent
from bayesladder.ladder import LadderSelection, check_sizes, check_tasks, select_runs

MODEL_VERSION = "bayesladder-v4"  # v4: stacking weights per direction of extrapolation
DESIGNS: dict[str, tuple[str, ...]] = {
    "two-step": ("loss", "accuracy"),
    "flops-step1": ("loss_flops", "accuracy"),
    "single-step": ("direct",),
}


def fits_step1(design: str) -> bool:
    """The design fits step 1 (task loss from N and D), so it needs each run's task loss."""
    return any(block.startswith("loss") for block in DESIGNS[design])


# How each block is sampled (nutpie's settings, and "thin": chains that many times longer, thinned to the draws asked,
# and "min_target_accept"). Measured on the OLMo paper ladder (8 tasks, full ladder) and Gemstones (all 19 models, or
# the 12 smallest of its nested fit), 4 chains x 1000 draws, 2 cores, seed 0 unless said:
# * step 1 ("loss"): a few strongly correlated parameters a task (E, A and alpha), which a low-rank mass matrix
#   captures (15 leapfrog steps a draw, no divergences; a diagonal one took 29 and diverged). Its exponents are weakly
#   identified on a ladder of few sizes (2 on a nested fit): 3x longer chains at a higher acceptance target (on the
#   OLMo ladder's 190M/370M: R-hat 1.013-1.022 and ESS ~250 at 1000 draws; <= 1.005 and >= 650 with this, for 5 s).
# * step 2 ("accuracy"): each task's floor trades off against its steepness k and its trend (posterior correlations
#   up to 0.93), which a diagonal mass matrix cannot follow: 59 leapfrog steps a draw on OLMo, 111 on Gemstones; a
#   low-rank one 15 and 30, 3x and 1.4x faster. Its eigenvalue regularisation (mass_matrix_gamma) is raised from
#   nutpie's 1e-5 to 1e-2: at 1e-5 the same 30 steps a draw took 50 s on Gemstones' 180 parameters instead of 5 s.
# * single-step ("direct"): the same trade-off, but the low-rank mass matrix let one chain of four settle in a second
#   mode of the tasks near their floor (Gemstones' 12 smallest, seeds 0-9: at 4, R-hat >= 1.48, 99-946 divergences in
#   that chain); the diagonal one, estimated from the draws, found it at none (64 steps a draw).
# Both step-2 blocks run at a higher acceptance target: the direct block diverged on winogrande near chance on the
# OLMo ladder's 190M/370M (its floor meets its level, where the logit slope in N runs off to match a flat accuracy:
# 0, 3, 3 divergences at seeds 0-2 at 0.9; 0, 0, 0 and 1 at seed 3 at 0.95), and the accuracy block once at seed 1
# at 0.9 on the OLMo ladder with all tasks (the trend trades off against the slope k in loss, which falls with N).
# The sizes' residuals are sampled non-centred (``model._size_residual``), so the single-step block needs no longer
# chains (bulk ESS >= 900 of 4000 draws on the five ladders, seeds 0-2). The accuracy block runs 2x longer
# ones: with the low-rank mass matrix a task's measurement jitter mixes slowest, and unthinned it reached R-hat
# 1.011-1.013 (OLMo, seeds 0 and 1: one nested fit left arc_challenge out of the calibration for it); thinned, its
# bulk and tail ESS were >= 999 there.
BLOCK_SAMPLING = {
    "loss": {"adaptation": "low_rank", "thin": 3, "min_target_accept": 0.95},
    "loss_flops": {"adaptation": "low_rank", "thin": 3, "min_target_accept": 0.95},
    "accuracy": {"adaptation": "low_rank", "mass_matrix_gamma": 1e-2, "thin": 2, "min_target_accept": 0.95},
    "direct": {"adaptation": "draw_diag", "thin": 1, "min_target_accept": 0.95},
}
STUCK_STEP_RATIO = 0.1  # see stuck_chains
RESAMPLE_SEED_OFFSET = 10_000  # a stuck block's second run: a seed no neighbouring --seed repeats
# a block that diverged is sampled once more at this acceptance target (smaller steps through the funnel where a
# task's floor meets its level, see BLOCK_SAMPLING): the micro ladder's nested fit on 1xC and 2xC, single-step,
# diverged once at seeds 2 and 3 of 0-5 at 0.95 (on cloze, its slope in N at its lowest), at 0.99 at neither
DIVERGENCE_TARGET_ACCEPT = 0.99
SAMPLE_STATS = ("diverging", "energy", "depth", "maxdepth_reached", "n_steps", "step_size")


@dataclass(frozen=True)
class FitConfig:
    """What to fit and how to sample it. Sampler arguments are checked here; tasks and the ladder selection
    against a dataset by :meth:`check`."""

    tasks: tuple[str, ...]
    selection: LadderSelection
    designs: tuple[str, ...] = ("two-step", "single-step")
    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    seed: int = 0
    target_accept: float = 0.9
    priors: dict[str, Prior] = field(default_factory=dict)

    def __post_init__(self):
        problems = []
        unknown = [d for d in self.designs if d not in DESIGNS]
        if unknown or not self.designs or len(set(self.designs)) < len(self.designs):
            problems.append(
                f"designs must be distinct names among {', '.join(DESIGNS)} (got {', '.join(self.designs)})"
            )
        for name in ("chains", "draws"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                problems.append(f"{name} must be a whole number >= 1 (got {getattr(self, name)!r})")
        if not (isinstance(self.tune, int) and self.tune >= 0):
            problems.append(f"tune must be a whole number >= 0 (got {self.tune!r})")
        if not 0 < self.target_accept < 1:
            problems.append(f"target_accept must lie strictly between 0 and 1 (got {self.target_accept!r})")
        merge(self.priors)  # unknown prior names are an error of their own
        if problems:
            raise BayesLadderError("bad fit configuration: " + "; ".join(problems))

    def check(self, ds: xr.Dataset) -> list[str]:
        """The runs this config fits in ``ds``; unknown tasks, sizes or lengths are one error listing them."""
        check_tasks(ds, self.tasks)
        runs = select_runs(ds, self.selection)
        check_sizes(ds, runs)
        return runs

    def step1_warning(self, ds: xr.Dataset) -> str | None:
        """A warning when a design of this config fits step 1 on no more runs than its curve has parameters per
        task (``data.step1_design``): such fits fail their diagnostics."""
        count, parameters = step1_design(ds, self.check(ds))
        if count > parameters or not any(fits_step1(d) for d in self.designs):
            return None
        return (
            f"{count} runs for the {parameters} parameters of step 1's curve per task: the curve can pass "
            "through every run, so the run noise cannot be told from it and the sampler is likely to diverge; add "
            "runs (sizes or lengths), or fit accuracy alone with --designs single-step"
        )

    def model_key(self) -> str:
        """What makes two fits the same model (sampler settings aside)."""
        return json.dumps(
            {
                "model": MODEL_VERSION,
                "designs": list(self.designs),
                "tasks": list(self.tasks),
                "selection": asdict(self.selection),
                "priors": json.loads(to_json(merge(self.priors))),
            },
            sort_keys=True,
        )


@dataclass
class DesignFit:
    """One design's posterior, sampler statistics and the data it saw (a group of the fit file)."""

    design: str
    tree: xr.DataTree

    @property
    def posterior(self) -> xr.Dataset:
        return self.tree["posterior"].to_dataset()

    @property
    def sample_stats(self) -> xr.Dataset:
        return self.tree["sample_stats"].to_dataset()

    @property
    def constants(self) -> xr.Dataset:
        return self.tree["constant_data"].to_dataset()

    @property
    def resampled(self) -> list[str]:
        """What :func:`sample_block` sampled again, one sentence per block (empty for most fits)."""
        return json.loads(self.tree.attrs.get("resampled", "[]"))

    @property
    def data(self) -> ModelData:
        """The numbers the model saw, as :func:`bayesladder.bayes.data.prepare` made them."""
        return model_data(self.constants)

    def extent(self) -> Extent:
        """The N and final D of the runs the design saw."""
        data = self.data
        return Extent(tuple(np.exp(data.s1_x + data.log_n_ref)), tuple(np.exp(data.s1_y + data.log_d_ref)))


@dataclass
class LadderFit:
    """The fitted designs with what made them: config, the nested backtest's calibration (stacking weights and
    discrepancy scales, ``bayes.stacking``), the dataset's content hash and path, and the diagnostics.

    ``diagnostics`` is the record of :func:`bayesladder.bayes.diagnostics.diagnose` (``ok``, ``failures``,
    ...) once the fit was checked, so that every command showing this fit's numbers can say whether to
    trust them without recomputing it.
    """

    tree: xr.DataTree  # one child per fitted design
    config: FitConfig
    data_hash: str
    calibration: Calibration
    seconds: float = float("nan")
    dataset_path: str = ""
    diagnostics: dict | None = None

    @property
    def designs(self) -> dict[str, DesignFit]:
        """The designs fitted on the full ladder, in the config's order."""
        return {d: DesignFit(d, self.tree[d]) for d in self.config.designs if d in self.tree.children}

    def resampled(self) -> list[str]:
        """What was sampled again because a chain got stuck (:func:`sample_block`), in the nested backtest's fits and
        the full ones: one '<where>: <what>' sentence per block (empty for most fits)."""
        nested = self.calibration.scores
        rows = nested.to_dict(orient="records") if "resampled" in nested else []
        return [
            f"nested backtest ({row['split']}), {row['design']}: {text}" for row in rows for text in row["resampled"]
        ] + [f"{name}: {text}" for name, design in self.designs.items() for text in design.resampled]

    def sampling_notes(self) -> list[str]:
        """What the fit did beyond sampling each model once: the blocks it sampled again (:meth:`resampled`) and the
        tasks its nested backtest left out (``Calibration.left_out_notes``)."""
        return self.resampled() + self.calibration.left_out_notes()

    def weights_at(self, n_params: float, tokens: float) -> dict[str, float]:
        """The designs' stacking weights for a target of ``n_params`` trained on ``tokens``
        (``Calibration.weights_at`` at its distance beyond the ladder)."""
        return self.calibration.weights_at(self.extent().efolds_beyond(n_params, tokens))

    @property
    def primary(self) -> DesignFit:
        """The design whose curves the report draws: two-step when fitted (it has both steps), else the first."""
        designs = self.designs
        return designs.get("two-step", next(iter(designs.values())))

    @property
    def posterior(self) -> xr.Dataset:
        return self.primary.posterior

    @property
    def constants(self) -> xr.Dataset:
        return self.primary.constants

    @property
    def data(self) -> ModelData:
        return self.primary.data

    @property
    def sizes(self) -> list[str]:
        return self.data.sizes

    def extent(self) -> Extent:
        """The N and final D of the runs the fit saw."""
        return self.primary.extent()

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        tree = self.tree.copy()
        tree.attrs.update(
            bayesladder_version=__version__,
            model_key=self.config.model_key(),
            fit_config=_config_json(self.config),
            data_hash=self.data_hash,
            fit_seconds=self.seconds,
            dataset_path=self.dataset_path,
            calibration=json.dumps(self.calibration.record()),
        )
        if self.diagnostics is not None:
            tree.attrs["diagnostics"] = json.dumps(self.diagnostics)
        schema.atomic_write_netcdf(tree, path)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, expect: FitConfig | None = None, dataset: xr.Dataset | None = None
    ) -> LadderFit:
        path = Path(path)
        if path.is_dir():
            raise BayesLadderError(
                f"{path} is a folder, not a fit file; give the .nc file written by 'bayesladder fit'"
            )
        if not path.is_file():
            raise BayesLadderError(f"{path}: no such fit file; make one with 'bayesladder fit -o {path.name}'")
        try:
            tree = xr.load_datatree(path, engine="h5netcdf")
            if "model_key" not in tree.attrs and "task_loss" in tree.variables:
                raise BayesLadderError(
                    f"{path} is a ladder dataset, not a fit file; pass it with --data, or fit it first: "
                    f"bayesladder fit --data {path} -o fit.nc"
                )
            stored_key, data_hash = tree.attrs["model_key"], tree.attrs["data_hash"]
            if _model_name(stored_key) != MODEL_VERSION:
                raise BayesLadderError(
                    f"{path}: made by another model version ({_model_name(stored_key)}; this package fits "
                    f"{MODEL_VERSION}); refit it with 'bayesladder fit'"
                )
            config = _config_from_json(tree.attrs["fit_config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # not netCDF, or not one of ours
            raise BayesLadderError(
                f"{path}: not a bayesladder fit file ({type(exc).__name__}); make one with 'bayesladder fit'"
            ) from None
        if stored_key != config.model_key():
            raise BayesLadderError(
                f"{path}: made with other priors or settings than this package version reads; refit it with "
                "'bayesladder fit'"
            )
        if expect is not None and expect.model_key() != stored_key:
            raise BayesLadderError(
                f"{path}: was fitted with a different configuration (design, tasks, ladder or priors); refit it"
            )
        if dataset is not None and schema.content_hash(dataset) != data_hash:
            raise BayesLadderError(
                f"{path}: was fitted on a different dataset than the one given; refit it on that dataset"
            )
        diagnostics = json.loads(tree.attrs["diagnostics"]) if "diagnostics" in tree.attrs else None
        return cls(
            tree=tree,
            config=config,
            data_hash=data_hash,
            calibration=Calibration.from_record(json.loads(tree.attrs["calibration"])),
            seconds=float(tree.attrs.get("fit_seconds", np.nan)),
            dataset_path=str(tree.attrs.get("dataset_path", "")),
            diagnostics=diagnostics,
        )


def fit(ds: xr.Dataset, config: FitConfig, progress=None) -> LadderFit:
    """The nested backtest (stacking weights, discrepancy scales; ``bayes.stacking``), then every design fitted
    on the full ladder. ``progress``: None, or a callable taking one line of text per stage."""
    start = time.perf_counter()
    runs = config.check(ds)
    with compilation.compiling_ahead(ds, fit_jobs(ds, config, runs), config.priors):
        calibration = calibrate(ds, config, progress)
        tree = xr.DataTree()
        for design in config.designs:
            if progress is not None:
                progress(f"fitting {design} on the full ladder ({config.chains} chains x {config.draws} draws)")
            tree[design] = fit_design(ds, config, design).tree
    return LadderFit(
        tree=tree,
        config=config,
        data_hash=schema.content_hash(ds),
        calibration=calibration,
        seconds=time.perf_counter() - start,
        dataset_path=str(ds.encoding.get("source", "")),
    )


def fit_jobs(ds: xr.Dataset, config: FitConfig, runs: list[str]) -> list[compilation.Job]:
    """Every model :func:`fit` samples, in order: each nested split's designs, then the full ladder's (not the refits
    without failing tasks, which are decided as they happen): what a fit can compile ahead (``compilation``)."""
    configs = [nested_config(config, split) for split in calibration_splits(ds, runs)] + [config]
    dataset = schema.content_hash(ds)
    return [job for each in configs for design in config.designs for job in design_jobs(ds, each, design, dataset)]


def design_jobs(ds: xr.Dataset, config: FitConfig, design: str, dataset: str | None = None) -> list[compilation.Job]:
    """The models of a design's blocks on the config's ladder, in the order they are sampled; ``dataset``: the
    dataset's content hash, when known."""
    runs, need_loss = tuple(config.check(ds)), fits_step1(design)
    dataset = dataset or schema.content_hash(ds)
    return [compilation.Job(dataset, runs, tuple(config.tasks), need_loss, block) for block in DESIGNS[design]]


def fit_design(ds: xr.Dataset, config: FitConfig, design: str) -> DesignFit:
    """One design on the config's ladder: each of its blocks sampled on its own, their draws paired."""
    jobs = design_jobs(ds, config, design)
    data = jobs[0].data(ds)  # the same for every block of a design
    posteriors, stats, resampled = [], [], []
    with compilation.compiling_ahead(ds, jobs, config.priors):
        for job in jobs:
            tree = sample_block(data, job, config)
            posteriors.append(tree["posterior"].to_dataset())
            stats.append(tree["sample_stats"].to_dataset()[list(SAMPLE_STATS)].expand_dims(block=[job.block]))
            resampled += [tree.attrs["resampled"]] if "resampled" in tree.attrs else []
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.merge(posteriors, compat="override", join="exact"),
            "sample_stats": xr.concat(stats, dim="block"),
            "observed_data": observed_data(data),
            "constant_data": constant_data(data),
        }
    )
    tree.attrs["resampled"] = json.dumps(resampled)
    return DesignFit(design, tree)


def sample_block(data: ModelData, job: compilation.Job, config: FitConfig) -> xr.DataTree:
    """One block's draws (thinned, see ``BLOCK_SAMPLING``). A block with a chain stuck in warmup
    (:func:`stuck_chains`) is sampled once more from new starting points (seed + :data:`RESAMPLE_SEED_OFFSET`); one
    whose draws diverged, once more at :data:`DIVERGENCE_TARGET_ACCEPT`. The tree's ``resampled`` attr says so, and
    the diagnostics judge the draws kept."""
    import nutpie

    block = job.block
    settings = BLOCK_SAMPLING[block]
    compilation.wait_for(job)
    compiled = compilation.compile_block(data, job, config.priors)
    target_accept = max(config.target_accept, settings["min_target_accept"])

    def run(seed: int) -> xr.DataTree:
        tree = nutpie.sample(
            compiled,
            chains=config.chains,
            draws=config.draws * settings["thin"],
            tune=config.tune,
            cores=available_cores(),
            seed=seed,
            progress_bar=False,
            save_warmup=False,
            target_accept=target_accept,
            **{name: value for name, value in settings.items() if name not in ("thin", "min_target_accept")},
        )
        thinned = slice(settings["thin"] - 1, None, settings["thin"])
        return xr.DataTree.from_dict(
            {
                group: tree[group].to_dataset().isel(draw=thinned).assign_coords(draw=np.arange(config.draws))
                for group in ("posterior", "sample_stats")
            }
        )

    seed, said = config.seed, []
    tree = run(seed)
    step = tree["sample_stats"]["step_size"].mean("draw").values
    stuck = stuck_chains(step)
    if stuck:
        seed = config.seed + RESAMPLE_SEED_OFFSET
        tree = run(seed)
        said.append(
            f"the {block} block's chain(s) {', '.join(map(str, stuck))} got stuck in warmup (adapted step size "
            f"{', '.join(f'{step[c]:.2g}' for c in stuck)} against {np.median(step):.2g}): sampled again from new "
            f"starting points (seed {seed})"
        )
    divergences = int(tree["sample_stats"]["diverging"].sum())
    if divergences and target_accept < DIVERGENCE_TARGET_ACCEPT:
        said.append(
            f"the {block} block had {divergences} divergent transition(s) at target_accept {target_accept:g}: "
            f"sampled again at {DIVERGENCE_TARGET_ACCEPT:g}"
        )
        target_accept = DIVERGENCE_TARGET_ACCEPT
        tree = run(seed)
    if said:
        tree.attrs["resampled"] = "; ".join(said)
    return tree


def stuck_chains(step_sizes: np.ndarray) -> list[int]:
    """The chains whose adapted step size is below :data:`STUCK_STEP_RATIO` of the chains' median: every chain
    samples the same posterior, so their step sizes agree (within ~10% on every ladder checked) unless a chain's
    warmup ended in a corner of extreme curvature (OLMo's full ladder, single-step design, seed 1: one chain at
    0.0005 against 0.073, every draw at the maximum tree depth, R-hat 1.6)."""
    return [int(c) for c in np.flatnonzero(step_sizes < STUCK_STEP_RATIO * np.median(step_sizes))]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def observed_data(data: ModelData) -> xr.Dataset:
    return xr.Dataset({"log_loss": ("loss_point", np.log(data.s1_loss)), "accuracy": ("acc_point", data.s2_acc)})


POINT_FIELDS = {
    "loss_point": ("s1_task", "s1_size", "s1_x", "s1_y", "s1_loss"),
    "acc_point": ("s2_task", "s2_size", "s2_y", "s2_loss", "s2_acc", "s2_count"),
}
TASK_FIELDS = ("chance", "n_questions", "loss_scale", "step2_center", "step2_spread")


def constant_data(data: ModelData) -> xr.Dataset:
    """Every number of :class:`ModelData`, so that a saved fit recomputes curves, likelihoods and predictions."""
    variables = {name: (dim, getattr(data, name)) for dim, names in POINT_FIELDS.items() for name in names}
    variables |= {name: ("task", getattr(data, name)) for name in TASK_FIELDS}
    variables["size_x"] = ("size", data.size_x)
    attrs = {
        "log_n_ref": data.log_n_ref,
        "log_d_ref": data.log_d_ref,
        "final_count": data.final_count,
        "final_only": int(data.final_only),
        "loss_units": data.loss_units,
    }
    return xr.Dataset(variables, coords={"task": data.tasks, "size": data.sizes}, attrs=attrs)


def model_data(constants: xr.Dataset) -> ModelData:
    """The inverse of :func:`constant_data`."""
    values = {name: constants[name].values for names in POINT_FIELDS.values() for name in names}
    values |= {name: constants[name].values for name in (*TASK_FIELDS, "size_x")}
    attrs = constants.attrs
    return ModelData(
        tasks=[str(t) for t in constants["task"].values],
        sizes=[str(s) for s in constants["size"].values],
        log_n_ref=float(attrs["log_n_ref"]),
        log_d_ref=float(attrs["log_d_ref"]),
        final_count=int(attrs["final_count"]),
        final_only=bool(attrs["final_only"]),
        loss_units=str(attrs["loss_units"]),
        **values,
    )


def _config_json(config: FitConfig) -> str:
    out = asdict(config)
    out["priors"] = {name: asdict(p) for name, p in config.priors.items()}
    return json.dumps(out, sort_keys=True)


def _config_from_json(text: str) -> FitConfig:
    raw = json.loads(text)
    selection = raw.pop("selection")
    priors = raw.pop("priors")
    return FitConfig(
        **{**raw, "tasks": tuple(raw["tasks"]), "designs": tuple(raw["designs"])},
        selection=LadderSelection(**{k: tuple(v) if v is not None else None for k, v in selection.items()}),
        priors={name: Prior(p["dist"], p["params"], tuple(p["dims"])) for name, p in priors.items()},
    )


def _model_name(key: str) -> str:
    """The model version named in a stored model key ('unknown model' when the key is unreadable)."""
    try:
        return str(json.loads(key)["model"])
    except (ValueError, KeyError, TypeError):
        return "unknown model"
