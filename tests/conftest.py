"""Shared fixtures: the OLMo-ladder data in ../shared (imported once per session) and small long CSVs."""

from __future__ import annotations

import csv
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pooch
import pytest
import xarray as xr
from cli_helpers import FIT_TASKS, TINY, invoke

from bayesladder import schema
from bayesladder.importers import long_csv, olmo_ladder

OLMO_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "olmo-ladder"
GEMSTONES_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "gemstones" / "gemstones.csv"

LONG_CSV_HEADER = [
    "run",
    "n_params",
    "tokens",
    "task",
    "task_loss",
    "accuracy",
    "size",
    "length",
    "replicate",
    "role",
    "step",
]


@pytest.fixture(scope="session")
def olmo_data() -> Path:
    """The shared OLMo-ladder folder (README.md, ladder.json, raw/*.csv, paper_method_3b.csv)."""
    if not (OLMO_DATA / "raw").is_dir():
        pytest.skip(f"OLMo-ladder data not found at {OLMO_DATA}")
    return OLMO_DATA


@pytest.fixture(scope="session")
def olmo_ladder_ds(olmo_data):
    """All 30 OLMo-ladder runs as a ladder dataset, imported once. Do not modify it in a test."""
    return olmo_ladder.import_dir(olmo_data / "raw")


@pytest.fixture(scope="session")
def olmo_ladder_nc(olmo_ladder_ds, tmp_path_factory) -> Path:
    """The same dataset written to a netCDF file (for CLI commands that take --data)."""
    from bayesladder import schema

    return schema.write(olmo_ladder_ds, tmp_path_factory.mktemp("olmo") / "ladder.nc")


@pytest.fixture(scope="session")
def gemstones_ds():
    """The Gemstones ladder (../shared): 19 models each trained once to the same 350B tokens."""
    if not GEMSTONES_CSV.is_file():
        pytest.skip(f"Gemstones data not found at {GEMSTONES_CSV}")
    return long_csv.import_file(GEMSTONES_CSV, units="nats", final_checkpoints=1)


@pytest.fixture(scope="session")
def gemstones_nc(gemstones_ds, tmp_path_factory) -> Path:
    return schema.write(gemstones_ds, tmp_path_factory.mktemp("gemstones") / "gemstones.nc")


def keep_last_checkpoint(ds):
    """``ds`` with each run reduced to its last evaluated checkpoint: a final-only ladder."""
    last = (ds["tokens"].notnull().cumsum("checkpoint").argmax("checkpoint")).values
    per_run = [ds.isel(run=[i], checkpoint=[int(c)]).assign_coords(checkpoint=[0]) for i, c in enumerate(last)]
    out = xr.concat(per_run, dim="run", data_vars="minimal", coords="minimal", compat="override", join="override")
    assert (out.sizes["checkpoint"], np.isnan(out["tokens"].values).sum()) == (1, 0)
    return out


@pytest.fixture(scope="session")
def olmo_final_only_ds(olmo_ladder_ds):
    """The OLMo ladder with only each run's last checkpoint (one evaluation per run). Do not modify it."""
    return keep_last_checkpoint(olmo_ladder_ds)


@pytest.fixture(scope="session")
def olmo_final_only_nc(olmo_final_only_ds, tmp_path_factory) -> Path:
    """The final-only OLMo ladder written to a netCDF file."""
    from bayesladder import schema

    return schema.write(olmo_final_only_ds, tmp_path_factory.mktemp("olmo-final") / "final_only.nc")


@pytest.fixture(scope="session")
def tiny_fit(olmo_ladder_nc, tmp_path_factory):
    """(fit file, CliRunner result, the models it compiled here in order) of the session's one tiny fit: 2 tasks,
    2 chains x 100 draws on the paper ladder, made through the CLI. Too short to pass the default diagnostics, which
    tests rely on."""
    from bayesladder.bayes import compilation

    path = tmp_path_factory.mktemp("bayes") / "fit.nc"
    compiled, compile_block = [], compilation.compile_block

    def recorded(data, job, priors):
        compiled.append(job)
        return compile_block(data, job, priors)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compilation, "compile_block", recorded)
        result = invoke(
            "fit",
            "--data",
            olmo_ladder_nc,
            "--ladder",
            "paper",
            "--tasks",
            ",".join(FIT_TASKS),
            *TINY,
            "-o",
            path,
            "--json",
        )
    return path, result, compiled


@pytest.fixture(scope="session")
def fit_file(tiny_fit):
    path, result, _ = tiny_fit
    assert path.is_file(), (result.exit_code, result.output, result.exception)
    return path


@pytest.fixture
def edited_fit(fit_file, tmp_path):
    """``edited_fit(edit)``: a copy of the session's fit file with ``edit(tree)`` applied, written to tmp_path."""

    def make(edit, name="edited.nc"):
        tree = xr.load_datatree(fit_file, engine="h5netcdf")
        edit(tree)
        out = tmp_path / name
        schema.atomic_write_netcdf(tree, out)
        return out

    return make


@pytest.fixture(scope="session")
def loaded_fit(fit_file):
    from bayesladder.bayes.fit import LadderFit

    return LadderFit.load(fit_file)


def long_csv_rows() -> list[dict]:
    """A small valid long CSV: 2 runs x 3 checkpoints x 2 tasks, rows deliberately not in token order."""
    rows = []
    for run, n_params, size, length, factor in (("s-1xC", 1e8, "s", "1xC", 1.0), ("m-1xC", 3e8, "m", "1xC", 0.9)):
        for tokens in (2e9, 0.5e9, 1e9):  # out of order on purpose
            for task, base_loss in (("alpha", 1.5), ("beta", 0.9)):
                loss = base_loss * factor * (1 + 0.5e9 / tokens) / 2
                rows.append(
                    dict(
                        run=run,
                        n_params=f"{n_params:g}",
                        tokens=f"{tokens:g}",
                        task=task,
                        task_loss=f"{loss:.6f}",
                        accuracy=f"{0.3 + 0.1 / loss:.6f}",
                        size=size,
                        length=length,
                        replicate="0",
                        role="ladder",
                        step=str(int(tokens / 1e6)),
                    )
                )
    return rows


def write_long_csv(path: Path, rows: list[dict] | None = None, header: list[str] | None = None) -> Path:
    """Write ``rows`` (default: :func:`long_csv_rows`) as a long CSV with ``header`` (default: all columns)."""
    rows = long_csv_rows() if rows is None else rows
    header = header or LONG_CSV_HEADER
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def long_csv_file(tmp_path) -> Path:
    """A small valid long CSV file in tmp_path."""
    return write_long_csv(tmp_path / "ladder.csv")


@pytest.fixture
def make_long_csv(tmp_path):
    """``make_long_csv(edit=None, header=None, extra_columns=(), name="ladder.csv")``: the valid rows, edited,
    written to tmp_path. ``edit(rows)`` changes the list of row dicts in place (e.g. ``rows[3]["tokens"] = "-1"``).
    """

    def make(edit=None, header=None, extra_columns=(), name="ladder.csv"):
        rows = long_csv_rows()
        if edit is not None:
            edit(rows)
        return write_long_csv(tmp_path / name, rows, [*(header or LONG_CSV_HEADER), *extra_columns])

    return make


@pytest.fixture
def offline_upstream(olmo_data, tmp_path, monkeypatch):
    """A local folder standing in for the upstream repository; pooch's HTTP downloader copies from it.

    The two target logs are not in ../shared: stand-ins are written and their registry hashes replaced.
    The default user cache is redirected to ``tmp_path / "user-cache"``. Returns (folder, list of requested URLs).
    """
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    for path in (olmo_data / "raw").glob("*.csv"):
        shutil.copy(path, upstream / path.name)
    registry = dict(olmo_ladder.UPSTREAM_SHA256)
    for name in olmo_ladder.TARGET_FILES:
        (upstream / name).write_bytes(f"stand-in for {name}\n".encode())
        registry[name] = hashlib.sha256((upstream / name).read_bytes()).hexdigest()
    monkeypatch.setattr(olmo_ladder, "UPSTREAM_SHA256", registry)
    requested = []

    def fake_http(self, url, output_file, pooch_, check_only=False):
        requested.append(url)
        shutil.copyfile(upstream / url.rsplit("/", 1)[-1], output_file)

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", fake_http)
    monkeypatch.setattr(pooch.downloaders, "tqdm", None)  # a base install has no tqdm
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(pooch, "os_cache", lambda project: tmp_path / "user-cache" / project)
    return upstream, requested
