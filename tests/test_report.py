"""`bayesladder report`: sections, figures, banner, Markdown, bad input, and the page in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import pytest
from cli_helpers import FIT_TASKS, assert_clean_error, invoke
from typer.testing import CliRunner

from bayesladder import datasets, schema
from bayesladder.bayes.diagnostics import diagnose
from bayesladder.bayes.fit import LadderFit
from bayesladder.cli import app

runner = CliRunner()
TASKS = tuple(FIT_TASKS)
SECTIONS = ["predictions", "chained", "step1", "step2", "diagnostics", "priors", "provenance"]
N_FIGURES = 2 + 2 * len(TASKS)  # chained + priors + one step-1 and one step-2 figure per task


@pytest.fixture(scope="session")
def olmo_fit_file(fit_file):
    """The session's tiny fit of the OLMo paper ladder (conftest): enough to draw a report, not to trust."""
    return fit_file


@pytest.fixture(scope="session")
def html_report(olmo_fit_file, tmp_path_factory):
    """The report of the tiny fit, made without --data: the fit's own dataset (ladder.nc) is used."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = invoke(
        "report", "--fit", olmo_fit_file, "--target", "3B-10xC,7B-4T", "--variance-run", "1B-10xC", "-o", out
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return out, result


def _images(page: str) -> list[str]:
    return re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]*)"', page)


def _tables(page: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, headers, rows of cell texts) of every table of the page."""
    out = []
    for caption, head, body in re.findall(
        r"<caption>(.*?)</caption><thead><tr>(.*?)</tr></thead>\s*<tbody>(.*?)</tbody>", page, re.S
    ):
        headers = re.findall(r"<th>(.*?)</th>", head)
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]
        out.append((caption, headers, rows))
    return out


def test_report_uses_the_fits_own_dataset_and_warns_of_failed_diagnostics(html_report, olmo_ladder_nc):
    _, result = html_report
    assert f"using the dataset the fit was made on: {olmo_ladder_nc}" in result.stderr
    assert "warning: Diagnostics failed" in result.stderr  # the tiny fit fails its ESS check


def test_report_html_is_self_contained_with_every_section_and_figure(html_report, olmo_fit_file):
    page = html_report[0].read_text()
    for key in SECTIONS + ["variance"]:
        assert f'<section id="{key}">' in page, key
    images = _images(page)
    assert len(images) == N_FIGURES
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything from the network"
    # a 2 x 100-draw fit fails its ESS check: the banner is at the top, before the first section
    assert not diagnose(LadderFit.load(olmo_fit_file)).ok
    banner = page.find('id="banner"')
    assert 0 < banner < page.find("<section"), "a failed diagnostic must be a banner at the top"
    assert "ESS" in page[banner : page.find("<section")]


def test_report_headline_tables_are_readable(html_report):
    """One table per target (no column repeating the target), readable headers, accuracy in points as ranges."""
    page = html_report[0].read_text()
    section = page[page.find('<section id="predictions">') : page.find('<section id="chained">')]
    tables = _tables(section)
    assert [caption.split(":")[0] for caption, _, _ in tables] == ["3B-10xC", "7B-4T"]
    for caption, headers, rows in tables:
        assert "N = " in caption and "D = " in caption and "in N" in caption  # how far beyond the ladder
        assert "target" not in headers and not any("_" in h for h in headers), headers  # no raw column names
        assert headers[:2] == ["task", "noisy task"]  # the variance run flags noisy tasks
        assert [r[0] for r in rows] == list(TASKS)
        for row in rows:
            cells = dict(zip(headers, row))
            median = float(cells["accuracy median"])
            low50, high50 = map(float, cells["50% interval"].split(" \u2013 "))
            low90, high90 = map(float, cells["90% interval"].split(" \u2013 "))
            assert low90 <= low50 <= median <= high50 <= high90, cells  # intervals in order, in points
            assert 1 < median < 100 and 1 < float(cells["paper fit"]) < 100
    actual_headers = {"actual", "error", "paper fit error", "in 90% interval"}
    assert actual_headers <= set(tables[0][1])  # 3B-10xC is a run of the dataset
    assert not actual_headers & set(tables[1][1])  # 7B-4T is not: no empty columns


def test_report_explains_hyperparameters_and_reruns(html_report, loaded_fit):
    from bayesladder.bayes.priors import DESCRIPTIONS, merge

    shared = [n for n, p in merge(loaded_fit.config.priors).items() if not p.dims and n in loaded_fit.posterior]
    assert shared and [n for n in shared if n not in DESCRIPTIONS] == []  # a sentence for each panel
    page = html_report[0].read_text()
    provenance = dict((row[0], row[1]) for _, _, rows in _tables(page) for row in rows if len(row) == 2)
    assert "1B-1xC-rerun" in provenance["independent reruns fitted"]
    assert "1B-1xC-rerun" not in provenance["runs fitted"] and "1B-10xC" in provenance["runs fitted"]
    assert "replicates=0" not in page


def test_report_markdown_writes_pngs_beside_it(olmo_fit_file, olmo_ladder_nc, tmp_path):
    out = tmp_path / "r.md"
    result = invoke("report", "--fit", olmo_fit_file, "--data", olmo_ladder_nc, "--format", "md", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == N_FIGURES
    for link in links:
        assert (tmp_path / link).stat().st_size > 5000
    for title in ("## Target predictions", "## Diagnostics", "## Data provenance", "## Prior vs posterior"):
        assert title in text
    # no --target: the sizes outside the fit (3B) at the ladder's lengths, with their actual values
    assert "*3B-10xC: N = " in text and "*3B-1xC: N = " in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md", "r_figures"]  # no temp files left


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--target", "nope"], ["unknown target 'nope'"]),
        (["--format", "pdf"], ["unknown --format 'pdf'"]),
        (["--variance-run", "1B-10xC", "--last", "999"], ["more than the 163 checkpoints"]),
    ],
)
def test_report_bad_input_is_one_line(olmo_fit_file, olmo_ladder_nc, tmp_path, extra, fragments):
    result = invoke("report", "--fit", olmo_fit_file, "--data", olmo_ladder_nc, "-o", tmp_path / "r.html", *extra)
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "r.html").exists()


def test_report_refuses_a_fit_of_another_dataset(olmo_fit_file, tmp_path):
    result = invoke("report", "--fit", olmo_fit_file, "--data", datasets.micro_ladder(), "-o", tmp_path / "r.html")
    assert_clean_error(result, "different dataset")


def test_report_refuses_a_file_that_is_not_a_fit(olmo_ladder_nc, tmp_path):
    result = invoke("report", "--fit", olmo_ladder_nc, "--data", olmo_ladder_nc, "-o", tmp_path / "r.html")
    assert_clean_error(result, "is a ladder dataset, not a fit file")


def test_report_says_so_when_the_baseline_does_not_converge(olmo_fit_file, olmo_ladder_nc, monkeypatch, tmp_path):
    """Only the baseline's own convergence failure is caught (and said); any other error is not swallowed."""
    from bayesladder import baseline, report

    fitted, ds = LadderFit.load(olmo_fit_file), schema.read(olmo_ladder_nc)

    def no_convergence(*args, **kwargs):
        raise baseline.BaselineFitError("step 2 of task mmlu: Optimal parameters not found")

    monkeypatch.setattr(baseline, "fit", no_convergence)
    built = report.build(fitted, ds, olmo_ladder_nc, targets=["3B-10xC"])
    assert "did not converge" in built.sections[0].text and "Optimal parameters not found" in built.sections[0].text
    assert built.predictions["baseline_acc"].isna().all()

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(baseline, "fit", bug)
    with pytest.raises(ZeroDivisionError):
        report.build(fitted, ds, olmo_ladder_nc, targets=["3B-10xC"])


def test_report_write_is_atomic(olmo_fit_file, olmo_ladder_nc, monkeypatch, tmp_path):
    from bayesladder.report import render

    out = tmp_path / "r.html"
    out.write_text("the previous report")

    def broken(report):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(render, "html", broken)
    built_report = render.Report(title="t", banner=[], sections=[], predictions=None)
    with pytest.raises(RuntimeError):
        render.write(built_report, out)
    assert out.read_text() == "the previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temp file left


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
    "--hide-scrollbars",
]
WINDOW = (1400, 900)
# Appended to a copy of the report (the report itself has no script): records page errors, each image's decoded
# size, and for each table whether it fits its container (scrollWidth <= clientWidth) at the window's width.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target && e.target.src || 'error')), true);
window.addEventListener('load', () => {
  const images = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.clientWidth]);
  const tables = Array.from(document.querySelectorAll('.scroll')).map(d => [d.scrollWidth, d.clientWidth]);
  document.body.setAttribute('data-probe', JSON.stringify({errors: window.__errors, images: images, tables: tables,
    width: window.innerWidth, page: document.documentElement.scrollWidth,
    sections: Array.from(document.querySelectorAll('section')).map(s => s.id)}));
});
</script>"""


def _chromium(*args, profile):
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed here (apt-get install -y chromium); .ci/run installs it, so CI runs this test",
)
def test_report_fits_a_1400px_window_in_headless_chromium(html_report, tmp_path):
    """The page at 1400 px: it loads, every figure decodes, no table overflows its box; and a screenshot."""
    assert CHROMIUM is not None, "CI must install chromium (see .ci/run)"
    page = html_report[0].read_text().replace("</body>", PROBE + "</body>")
    probe_file = tmp_path / "probe.html"
    probe_file.write_text(page)
    done = _chromium("--virtual-time-budget=5000", "--dump-dom", probe_file.as_uri(), profile=tmp_path / "p1")
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r"data-probe=\"([^\"]*)\"", done.stdout)
    assert match, f"the page did not finish loading: {done.stdout[:500]}"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["errors"] == []
    assert probe["width"] == WINDOW[0] and probe["page"] <= WINDOW[0]  # no horizontal scrolling of the page
    assert len(probe["images"]) == N_FIGURES
    assert all(complete and width > 100 and height > 100 for complete, width, height, _ in probe["images"])
    assert all(shown <= WINDOW[0] for *_, shown in probe["images"])
    assert probe["tables"] and all(scroll <= client for scroll, client in probe["tables"]), probe["tables"]
    assert [s for s in SECTIONS if s not in probe["sections"]] == []
    shot = tmp_path / "report-1400.png"
    done = _chromium(f"--screenshot={shot}", html_report[0].as_uri(), profile=tmp_path / "p2")
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr[-2000:]


def test_report_build_api_on_the_dataset_file(olmo_fit_file, olmo_ladder_ds, olmo_ladder_nc):
    from bayesladder import report

    fitted = LadderFit.load(olmo_fit_file, dataset=olmo_ladder_ds)
    built = report.build(fitted, schema.read(olmo_ladder_nc), olmo_ladder_nc, targets=["3B-5xC"])
    predictions = built.predictions
    assert list(predictions["task"]) == list(TASKS)
    row = predictions.iloc[0]
    assert row["acc_q05"] <= row["acc_q25"] <= row["acc_median"] <= row["acc_q75"] <= row["acc_q95"]
    assert abs(row["error"] - (row["acc_median"] - row["actual_acc"])) < 1e-12
    assert row["far_outside_ladder"] is False or not row["far_outside_ladder"]
    provenance = dict(built.sections[-1].tables[0][1].values)
    assert provenance["dataset content hash"].startswith(schema.content_hash(olmo_ladder_ds))
    assert "1B-10xC" in provenance["runs fitted"] and "1B-1xC-rerun" in provenance["independent reruns fitted"]


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
        "divergences": 0,
        "refit_ok": True,
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
    result = invoke(
        "report", "--fit", olmo_fit_file, "--data", olmo_ladder_nc, "--subsets", subsets, "-o", tmp_path / "r.html"
    )
    assert_clean_error(result, str(subsets), fragment)
