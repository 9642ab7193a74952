"""The ladder dataset schema: validate() lists every problem, read() refuses bad files, writes are atomic."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesladder import __version__, schema
from bayesladder.errors import BayesLadderError


def small_dataset(**overrides) -> xr.Dataset:
    """2 runs x 3 checkpoints (the second run has only 2) x 2 tasks, built through the schema."""
    runs = [
        dict(
            name="a-1xC",
            size="a",
            length="1xC",
            multiplier=1,
            replicate=0,
            n_params=1e8,
            role="ladder",
            source="x.csv",
            schedule="cosine",
        ),
        dict(
            name="b-2xC",
            size="b",
            length="2xC",
            multiplier=2,
            replicate=1,
            n_params=3e8,
            role="target",
            source="y.csv",
            schedule="",
        ),
    ]
    tasks = [dict(name="alpha", n_questions=100, chance=0.25, source_key="alpha_src"), dict(name="beta")]
    tokens = np.array([[1e9, 2e9, 4e9], [3e9, 6e9, np.nan]])
    loss = np.arange(12, dtype=float).reshape(2, 3, 2) / 10 + 0.5
    acc = np.linspace(0.2, 0.9, 12).reshape(2, 3, 2)
    loss[1, 2], acc[1, 2] = np.nan, np.nan
    args = dict(runs=runs, tasks=tasks, task_loss=loss, accuracy=acc, tokens=tokens, step=tokens / 1e6, producer="test")
    args.update(overrides)
    return schema.build_dataset(**args)


def test_good_dataset_has_no_problems():
    assert schema.validate(small_dataset()) == []


def test_build_dataset_derives_flops_and_metadata():
    ds = small_dataset()
    np.testing.assert_allclose(ds["flops"].values[0], [6e17, 1.2e18, 2.4e18])  # 6ND, N = 1e8
    assert np.isnan(ds["flops"].values[1, 2])
    assert ds["replicate"].values.tolist() == [0, 1]
    assert ds["source_key"].values.tolist() == ["alpha_src", "beta"]  # defaults to the task name
    assert np.isnan(ds["chance"].values[1]) and np.isnan(ds["n_questions"].values[1])
    assert list(schema.n_checkpoints(ds).values) == [3, 2]


def test_the_olmo_dataset_is_valid(olmo_ladder_ds):
    assert schema.validate(olmo_ladder_ds) == []


@pytest.mark.parametrize(
    "name, break_it, expected",
    [
        ("missing variable", lambda ds: ds.drop_vars("flops"), "variable 'flops' is missing"),
        ("wrong dims", lambda ds: ds.assign(n_params=("task", [1.0, 2.0])), "variable 'n_params' has dims"),
        ("wrong dtype", lambda ds: ds.assign(size=("run", [1.0, 2.0])), "variable 'size' has dtype"),
        (
            "non-positive n_params",
            lambda ds: ds.assign(n_params=("run", [1e8, 0.0])),
            "run 'b-2xC': n_params must be a positive",
        ),
        ("decreasing tokens", lambda ds: _set(ds, "tokens", (0, 2), 1.5e9), "run 'a-1xC': tokens must not decrease"),
        ("non-positive tokens", lambda ds: _set(ds, "tokens", (0, 0), -1.0), "run 'a-1xC': tokens must be positive"),
        (
            "gap in checkpoints",
            lambda ds: _set(ds, "tokens", (0, 1), np.nan),
            "run 'a-1xC': checkpoints must be packed",
        ),
        ("accuracy above 1", lambda ds: _set(ds, "accuracy", (0, 0, 0), 1.2), "accuracy must lie in [0, 1]"),
        ("accuracy below 0", lambda ds: _set(ds, "accuracy", (1, 1, 1), -0.1), "accuracy must lie in [0, 1]"),
        ("negative task loss", lambda ds: _set(ds, "task_loss", (0, 0, 0), -0.1), "task_loss must be non-negative"),
        ("unknown role", lambda ds: ds.assign(role=("run", ["ladder", "teacher"])), "unknown role(s) ['teacher']"),
        ("duplicate run names", lambda ds: ds.assign_coords(run=["a-1xC", "a-1xC"]), "duplicate run names: a-1xC"),
        ("bad chance", lambda ds: ds.assign(chance=("task", [1.5, np.nan])), "task 'alpha': chance must lie strictly"),
        (
            "no checkpoint",
            lambda ds: _set(ds, "tokens", (1, slice(None)), np.nan),
            "run 'b-2xC' has no evaluated checkpoint",
        ),
    ],
)
def test_each_broken_variant_is_reported(name, break_it, expected):
    problems = schema.validate(break_it(small_dataset()))
    assert any(expected in p for p in problems), f"{name}: {problems}"


def _set(ds, variable, index, value):
    ds = ds.copy(deep=True)
    ds[variable].values[index] = value
    return ds


def test_validate_returns_every_problem_at_once():
    ds = small_dataset()
    ds = ds.drop_vars("flops").assign(n_params=("run", [-1.0, 3e8]), role=("run", ["ladder", "teacher"]))
    ds = _set(ds, "tokens", (0, 2), 1.5e9)
    ds = _set(ds, "accuracy", (0, 0, 0), 1.2)
    ds = ds.assign_coords(task=["alpha", "alpha"])
    problems = schema.validate(ds)
    for expected in (
        "variable 'flops' is missing",
        "n_params must be a positive",
        "unknown role(s)",
        "tokens must not decrease",
        "accuracy must lie in [0, 1]",
        "duplicate task names",
    ):
        assert any(expected in p for p in problems), (expected, problems)
    assert len(problems) == 6


def test_write_refuses_an_invalid_dataset(tmp_path):
    bad = small_dataset().assign(n_params=("run", [0.0, 3e8]))
    with pytest.raises(BayesLadderError, match="n_params must be a positive"):
        schema.write(bad, tmp_path / "bad.nc")
    assert list(tmp_path.iterdir()) == []


def test_read_of_an_invalid_file_raises_one_error_naming_file_and_fix(tmp_path):
    path = tmp_path / "broken.nc"
    small_dataset().drop_vars("flops").assign(role=("run", ["ladder", "teacher"])).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(BayesLadderError) as info:
        schema.read(path)
    message = str(info.value)
    assert str(path) in message
    assert "'flops' is missing" in message and "teacher" in message
    assert "bayesladder import" in message  # how to fix it
    assert "\n" not in message


def test_read_of_a_missing_or_non_netcdf_file(tmp_path):
    with pytest.raises(BayesLadderError, match="no such file"):
        schema.read(tmp_path / "nope.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("run,n_params\na,1\n")
    with pytest.raises(BayesLadderError, match=r"junk\.nc: not a readable netCDF file"):
        schema.read(junk)


def test_netcdf_round_trip_preserves_values_strings_and_attrs(tmp_path):
    ds = small_dataset()
    back = schema.read(schema.write(ds, tmp_path / "ladder.nc"))
    xr.testing.assert_allclose(ds, back)  # values, NaN padding, coords and strings
    assert back["run"].values.tolist() == ["a-1xC", "b-2xC"]
    assert back["role"].values.tolist() == ["ladder", "target"]
    assert back["schedule"].values.tolist() == ["cosine", ""]
    assert back["replicate"].dtype.kind in "iu"
    for name in back.variables:
        assert back[name].attrs.get("long_name"), name
        assert "units" in back[name].attrs, name
        assert back[name].attrs == ds[name].attrs, name
    assert back["task_loss"].attrs["units"] == "bits/byte"
    assert back["tokens"].attrs["units"] == "tokens"
    assert back.attrs == ds.attrs
    assert back.attrs["producer"] == "test"
    assert back.attrs["bayesladder_version"] == __version__
    assert "input embedding" in back.attrs["n_params_convention"]
    assert schema.content_hash(back) == schema.content_hash(ds)


def test_olmo_round_trip(olmo_ladder_ds, olmo_ladder_nc):
    back = schema.read(olmo_ladder_nc)
    xr.testing.assert_equal(olmo_ladder_ds, back)
    assert back.attrs == olmo_ladder_ds.attrs


def test_content_hash_changes_with_the_numbers():
    ds = small_dataset()
    assert schema.content_hash(ds) != schema.content_hash(_set(ds, "task_loss", (0, 0, 0), 0.51))


def test_interrupted_write_leaves_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ladder.nc"
    schema.write(small_dataset(), path)
    before = path.read_bytes()

    def write_half_then_fail(self, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"\x89HDF partial")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write

    monkeypatch.setattr(xr.Dataset, "to_netcdf", write_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        schema.write(small_dataset(producer="second"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ladder.nc"]
    monkeypatch.undo()
    assert schema.read(path).attrs["producer"] == "test"


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "ladder.nc"
    schema.write(small_dataset(), path)
    schema.write(small_dataset(producer="second"), path)
    assert schema.read(path).attrs["producer"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["ladder.nc"]


def test_write_to_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BayesLadderError, match="is a folder"):
        schema.write(small_dataset(), tmp_path)
    assert list(tmp_path.iterdir()) == []
