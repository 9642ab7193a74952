"""`bayesladder report`: sections, figures, banner, Markdown, bad input, and the page in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from bayesladder import datasets, schema
from bayesladder.bayes.diagnostics import diagnose
from bayesladder.bayes.fit import FitConfig, LadderFit, fit
from bayesladder.cli import app
from bayesladder.ladder import PRESETS

runner = CliRunner()
TASKS = ("hellaswag", "arc_easy")
SECTIONS = ["predictions", "chained", "step1", "step2", "diagnostics", "priors", "provenance"]
N_FIGURES = 2 + 2 * len(TASKS)  # chained + priors + one step-1 and one step-2 figure per task


@pytest.fixture(scope="session")
def olmo_fit_file(olmo_ladder_ds, tmp_path_factory):
    """A tiny fit (2 tasks, paper ladder, 2 x 60 draws) of the OLMo ladder: enough to draw a report, not to trust."""
    config = FitConfig(tasks=TASKS, selection=PRESETS["paper"], chains=2, draws=60, tune=60)
    return fit(olmo_ladder_ds, config).save(tmp_path_factory.mktemp("fit") / "fit.nc")


@pytest.fixture(scope="session")
def html_report(olmo_fit_file, olmo_ladder_nc, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = runner.invoke(
        app,
        [
            "report",
            "--fit",
            str(olmo_fit_file),
            "--data",
            str(olmo_ladder_nc),
            "--target",
            "3B-10xC,7B-4T",
            "--variance-run",
            "1B-10xC",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def _images(page: str) -> list[str]:
    return re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]*)"', page)


def test_report_html_is_self_contained_with_every_section_and_figure(html_report, olmo_fit_file):
    page = html_report.read_text()
    for key in SECTIONS + ["variance"]:
        assert f'<section id="{key}">' in page, key
    images = _images(page)
    assert len(images) == N_FIGURES
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything from the network"
    # the headline table: both targets, the baseline, and the actual value of the dataset run only
    assert page.count('<td class="text nw">3B-10xC</td>') == len(TASKS)
    assert "baseline_acc" in page and "actual_acc" in page and "covered90" in page
    assert "noisy" in page  # the variance run flags tasks in the headline table
    # a 2 x 60-draw fit fails its ESS check: the banner is at the top, before the first section
    assert not diagnose(LadderFit.load(olmo_fit_file)).ok
    banner = page.find('id="banner"')
    assert 0 < banner < page.find("<section"), "a failed diagnostic must be a banner at the top"
    assert "ESS" in page[banner : page.find("<section")]


def test_report_markdown_writes_pngs_beside_it(olmo_fit_file, olmo_ladder_nc, tmp_path):
    out = tmp_path / "r.md"
    result = runner.invoke(
        app, ["report", "--fit", str(olmo_fit_file), "--data", str(olmo_ladder_nc), "--format", "md", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == N_FIGURES
    for link in links:
        assert (tmp_path / link).stat().st_size > 5000
    for title in ("## Target predictions", "## Diagnostics", "## Data provenance", "## Prior vs posterior"):
        assert title in text
    # no --target: the sizes outside the fit (3B) at the ladder's lengths, with their actual values
    assert "| 3B-10xC |" in text and "| 3B-1xC |" in text


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--target", "nope"], "unknown target 'nope'"),
        (["--format", "pdf"], "unknown --format 'pdf'"),
        (["--variance-run", "1B-10xC", "--last", "999"], "more than the 163 checkpoints"),
    ],
)
def test_report_bad_input_is_one_line(olmo_fit_file, olmo_ladder_nc, tmp_path, extra, fragment):
    result = runner.invoke(
        app,
        ["report", "--fit", str(olmo_fit_file), "--data", str(olmo_ladder_nc), "-o", str(tmp_path / "r.html"), *extra],
    )
    assert result.exit_code == 1
    assert fragment in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


def test_report_refuses_a_fit_of_another_dataset(olmo_fit_file, tmp_path):
    result = runner.invoke(
        app,
        ["report", "--fit", str(olmo_fit_file), "--data", str(datasets.micro_ladder()), "-o", str(tmp_path / "r.html")],
    )
    assert result.exit_code == 1
    assert "different dataset" in result.output and result.output.count("\n") == 1


def test_report_refuses_a_file_that_is_not_a_fit(olmo_ladder_nc, tmp_path):
    result = runner.invoke(
        app, ["report", "--fit", str(olmo_ladder_nc), "--data", str(olmo_ladder_nc), "-o", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 1 and "not a bayesladder fit file" in result.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Appended to a copy of the report (the report itself has no script): records page errors and each image's decoded size.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target && e.target.src || 'error')), true);
window.addEventListener('load', () => {
  const images = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  document.body.setAttribute('data-probe', JSON.stringify({errors: window.__errors, images: images,
    sections: Array.from(document.querySelectorAll('section')).map(s => s.id)}));
});
</script>"""


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed here (apt-get install -y chromium); .ci/run installs it, so CI runs this test",
)
def test_report_loads_in_headless_chromium(html_report, tmp_path):
    assert CHROMIUM is not None, "CI must install chromium (see .ci/run)"
    page = html_report.read_text().replace("</body>", PROBE + "</body>")
    probe_file = tmp_path / "probe.html"
    probe_file.write_text(page)
    done = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe_file.as_uri(),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r"data-probe=\"([^\"]*)\"", done.stdout)
    assert match, f"the page did not finish loading: {done.stdout[:500]}"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["errors"] == []
    assert len(probe["images"]) == N_FIGURES
    assert all(complete and width > 100 and height > 100 for complete, width, height in probe["images"])
    assert [s for s in SECTIONS if s not in probe["sections"]] == []


def test_report_build_api_on_the_dataset_file(olmo_fit_file, olmo_ladder_ds, olmo_ladder_nc):
    from bayesladder import report

    fitted = LadderFit.load(olmo_fit_file, dataset=olmo_ladder_ds)
    built = report.build(fitted, schema.read(olmo_ladder_nc), olmo_ladder_nc, targets=["3B-5xC"])
    headline = built.sections[0].tables[0][1]
    assert list(headline["task"]) == list(TASKS)
    row = headline.iloc[0]
    assert row["acc_q05"] <= row["acc_q25"] <= row["acc_median"] <= row["acc_q75"] <= row["acc_q95"]
    assert abs(row["error"] - (row["acc_median"] - row["actual_acc"])) < 1e-12
    provenance = dict(built.sections[-1].tables[0][1].values)
    assert provenance["dataset content hash"] == schema.content_hash(olmo_ladder_ds)
    assert "1B-10xC" in provenance["runs used by the fit"] and "1B-1xC-rerun" in provenance["runs used by the fit"]


SUBSET_RECORDS = [
    {
        "subset": name,
        "sizes": "370M,760M,1B",
        "lengths": "1xC,2xC",
        "n_runs": n,
        "flops": 1e21 * f,
        "flops_fraction": f,
        "mae": mae,
        "coverage": 1.0,
        "mean_width": 0.1,
        "mean_crps": 0.01,
        "baseline_mae": 0.03,
        "max_rhat": 1.0,
        "n": 3,
    }
    for name, n, f, mae in (("full ladder", 12, 0.4, 0.02), ("drop largest size", 8, 0.13, 0.03))
]


def test_report_adds_the_subsets_and_compare_sections(olmo_fit_file, olmo_ladder_nc, tmp_path):
    from bayesladder.analyses.designs import COLUMNS

    subsets = tmp_path / "subsets.json"
    subsets.write_text(json.dumps(SUBSET_RECORDS))
    compare_file = tmp_path / "compare.json"
    compare_file.write_text(
        json.dumps(
            [
                dict.fromkeys(COLUMNS, 0.01) | {"design": d, "rank": i + 1, "n": 6, "description": d, "elpd_loo": None}
                for i, d in enumerate(("two-step", "baseline"))
            ]
        )
    )
    out = tmp_path / "r.html"
    result = runner.invoke(
        app,
        [
            "report",
            "--fit",
            str(olmo_fit_file),
            "--data",
            str(olmo_ladder_nc),
            "--target",
            "3B-10xC",
            "--subsets",
            str(subsets),
            "--compare",
            str(compare_file),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert '<section id="subsets">' in page and "drop largest size" in page
    assert '<section id="compare">' in page and '<td class="text nw">two-step</td>' in page
    assert len(_images(page)) == N_FIGURES + 1


@pytest.mark.parametrize(
    "content, fragment",
    [("not json", "not a readable JSON file"), ("[]", "non-empty JSON list"), ('[{"subset": "x"}]', "lacks column(s)")],
)
def test_report_bad_subsets_file_is_one_line(olmo_fit_file, olmo_ladder_nc, tmp_path, content, fragment):
    subsets = tmp_path / "subsets.json"
    subsets.write_text(content)
    result = runner.invoke(
        app,
        [
            "report",
            "--fit",
            str(olmo_fit_file),
            "--data",
            str(olmo_ladder_nc),
            "--subsets",
            str(subsets),
            "-o",
            str(tmp_path / "r.html"),
        ],
    )
    assert result.exit_code == 1
    assert fragment in result.output and result.output.count("\n") == 1
