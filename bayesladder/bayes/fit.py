"""Fitting the model, and the fit as a file: an ArviZ DataTree in netCDF with its config in attrs.

A saved fit holds the posterior, the sampler statistics, the data the model saw (observed_data and
constant_data) and, in attrs, the model configuration, the dataset's content hash and the package
version. Loading refuses a fit whose configuration or dataset differs from what the caller expects.
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
from bayesladder.bayes.data import ModelData, prepare
from bayesladder.bayes.priors import Prior, merge, to_json
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import LadderSelection, select_runs

MODEL_VERSION = "two-step-v1"
CONSTANT_FIELDS = ("chance", "n_questions", "loss_scale", "step2_center", "step2_spread")


@dataclass(frozen=True)
class FitConfig:
    tasks: tuple[str, ...]
    selection: LadderSelection
    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    seed: int = 0
    target_accept: float = 0.9
    priors: dict[str, Prior] = field(default_factory=dict)

    def model_key(self) -> str:
        """What makes two fits the same model (sampler settings aside)."""
        return json.dumps(
            {
                "model": MODEL_VERSION,
                "tasks": list(self.tasks),
                "selection": asdict(self.selection),
                "priors": json.loads(to_json(merge(self.priors))),
            },
            sort_keys=True,
        )


@dataclass
class LadderFit:
    """A fitted posterior with what made it: config, the dataset's content hash and path, its diagnostics.

    ``diagnostics`` is the record of :func:`bayesladder.bayes.diagnostics.diagnose` (``ok``, ``failures``,
    ...) once the fit was checked, so that every command showing this fit's numbers can say whether to
    trust them without recomputing it.
    """

    tree: xr.DataTree
    config: FitConfig
    data_hash: str
    seconds: float = float("nan")
    dataset_path: str = ""
    diagnostics: dict | None = None

    @property
    def posterior(self) -> xr.Dataset:
        return self.tree["posterior"].to_dataset()

    @property
    def constants(self) -> xr.Dataset:
        return self.tree["constant_data"].to_dataset()

    @property
    def sizes(self) -> list[str]:
        return [str(s) for s in self.tree["posterior"]["size"].values]

    def largest_rung(self) -> tuple[float, float]:
        """(largest N, largest final D) among the runs the fit saw."""
        const = self.constants
        return (
            float(np.exp(const["loss_x"].values.max() + const.attrs["log_n_ref"])),
            float(np.exp(const["loss_y"].values.max() + const.attrs["log_d_ref"])),
        )

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
            config = _config_from_json(tree.attrs["fit_config"])
            stored_key, data_hash = tree.attrs["model_key"], tree.attrs["data_hash"]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # not netCDF, or not one of ours
            raise BayesLadderError(
                f"{path}: not a bayesladder fit file ({type(exc).__name__}); make one with 'bayesladder fit'"
            ) from None
        if stored_key != config.model_key():
            raise BayesLadderError(
                f"{path}: made by a different model version or configuration ({_model_name(stored_key)}, this "
                f"package fits {MODEL_VERSION} with its current priors); refit it with 'bayesladder fit'"
            )
        if expect is not None and expect.model_key() != stored_key:
            raise BayesLadderError(
                f"{path}: was fitted with a different configuration (tasks, ladder or priors); refit it"
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
            seconds=float(tree.attrs.get("fit_seconds", np.nan)),
            dataset_path=str(tree.attrs.get("dataset_path", "")),
            diagnostics=diagnostics,
        )


def fit(ds: xr.Dataset, config: FitConfig, progress: bool = False) -> LadderFit:
    """Prepare the data, build the model, sample it with nutpie on every available core."""
    import nutpie

    from bayesladder.bayes.model import build_model

    start = time.perf_counter()
    runs = select_runs(ds, config.selection)
    data = prepare(ds, runs, list(config.tasks))
    model = build_model(data, config.priors)
    compiled = nutpie.compile_pymc_model(model)
    tree = nutpie.sample(
        compiled,
        chains=config.chains,
        draws=config.draws,
        tune=config.tune,
        cores=available_cores(),
        seed=config.seed,
        progress_bar=progress,
        save_warmup=False,
        target_accept=config.target_accept,
    )
    tree["observed_data"] = xr.DataTree(observed_data(data))
    tree["constant_data"] = xr.DataTree(constant_data(data))
    return LadderFit(
        tree=tree,
        config=config,
        data_hash=schema.content_hash(ds),
        seconds=time.perf_counter() - start,
        dataset_path=str(ds.encoding.get("source", "")),
    )


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def observed_data(data: ModelData) -> xr.Dataset:
    return xr.Dataset(
        {
            "log_loss": ("loss_point", np.log(data.s1_loss)),
            "accuracy": ("acc_point", data.s2_acc),
        }
    )


def constant_data(data: ModelData) -> xr.Dataset:
    """Everything needed to recompute the curves and likelihood from the posterior alone."""
    return xr.Dataset(
        {
            **{name: ("task", getattr(data, name)) for name in CONSTANT_FIELDS},
            "loss_task": ("loss_point", data.s1_task),
            "loss_size": ("loss_point", data.s1_size),
            "loss_x": ("loss_point", data.s1_x),
            "loss_y": ("loss_point", data.s1_y),
            "acc_task": ("acc_point", data.s2_task),
            "acc_size": ("acc_point", data.s2_size),
            "acc_loss": ("acc_point", data.s2_loss),
            "acc_count": ("acc_point", data.s2_count),
        },
        coords={"task": data.tasks, "size": data.sizes},
        attrs={"log_n_ref": data.log_n_ref, "log_d_ref": data.log_d_ref, "final_count": data.final_count},
    )


def _config_json(config: FitConfig) -> str:
    out = asdict(config)
    out["priors"] = {name: asdict(p) for name, p in config.priors.items()}
    return json.dumps(out, sort_keys=True)


def _config_from_json(text: str) -> FitConfig:
    raw = json.loads(text)
    selection = raw["selection"]
    return FitConfig(
        tasks=tuple(raw["tasks"]),
        selection=LadderSelection(**{k: tuple(v) if v is not None else None for k, v in selection.items()}),
        chains=raw["chains"],
        draws=raw["draws"],
        tune=raw["tune"],
        seed=raw["seed"],
        target_accept=raw.get("target_accept", 0.9),
        priors={name: Prior(p["dist"], p["params"], tuple(p["dims"])) for name, p in raw["priors"].items()},
    )


def _model_name(key: str) -> str:
    """The model version named in a stored model key ('unknown model' when the key is unreadable)."""
    try:
        return str(json.loads(key)["model"])
    except (ValueError, KeyError, TypeError):
        return "unknown model"
