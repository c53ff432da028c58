import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from tests.browser import CHROMIUM, DRIVER, ENLARGE, GALLERY_COLUMNS, LAYOUT, gallery_shot, in_chromium
from trainlab.cli import main
from trainlab.report import build_report
from trainlab.report.figures import overlapping_texts
from trainlab.store import RunStore
from trainlab.study import run_study
from trainlab.study.report_sections import DEFAULT_SECTIONS, SECTIONS

STUDY = {
    "name": "depth-activation",
    "question": "Does the activation decide whether a deep MLP trains?",
    "base": {"data": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [32] * 6},
             "train": {"epochs": 3, "batch_size": 64, "lr": 0.003},
             "probes": {"embeddings_at": [0, 3], "embedding_samples": 150}},
    "vary": {"model.activation": ["sigmoid", "relu"]},
    "seeds": 3,
    "report": [*DEFAULT_SECTIONS, "gradient_norms", {"analyses": {"what": ["embeddings", "confusion"]}}],
}
SECTION_TITLES = ["Question", "What varies", "Findings", "Final metrics", "Learning curves", "Gradient distributions",
                  "Gradients and weights across depth", "Histograms over time", "Runtime", "Models",
                  "Gradient norm during training", "What the networks learned"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    result = run_study(STUDY, store=store)
    files = build_report(STUDY, store=store)
    return result, files, store


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_every_section_is_present_and_every_image_decodes(report):
    _, files, _ = report
    html = files.html.read_text()
    for title in SECTION_TITLES:
        assert f"<h2>{title}</h2>" in html, title
    images = _images(html)
    assert len(images) == 10  # 1 final metrics + 1 curves + 1 distributions + 2 depth + 1 over time + 1 runtime + 1 norms + 2 analyses
    for png in images:
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            assert image.format == "PNG" and image.size[0] >= 500
    assert "src=\"http" not in html and "<link" not in html  # self-contained: opens offline

    markdown = files.markdown.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", markdown)
    assert sorted(linked) == sorted(p.name for p in files.figures.iterdir())
    assert len(linked) == len(images)
    for title in SECTION_TITLES:
        assert f"## {title}" in markdown


def test_confidence_intervals_equal_a_direct_computation(report):
    result, files, _ = report
    html = files.html.read_text()
    for label in ("activation=sigmoid", "activation=relu"):
        values = result.runs.loc[result.runs["label"] == label, "test_acc"].to_numpy()
        n = len(values)
        half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
        assert f"{values.mean():.4f} ± {half:.4f}" in html


def test_vanishing_gradients_found_for_the_deep_sigmoid_mlp_only(report):
    _, files, _ = report
    findings = files.html.read_text().split("<h2>Findings</h2>")[1].split("</section>")[0]
    vanishing = [p for p in re.findall(r"<p>(.*?)</p>", findings) if "vanishing gradients" in p]
    assert len(vanishing) == 1 and vanishing[0].startswith("activation=sigmoid")
    ratio = float(re.search(r"gradient ratio ([0-9.e+-]+)", vanishing[0]).group(1))
    assert ratio < 1e-2
    assert 'href="#fig-layer-grad-means"' in vanishing[0] and 'id="fig-layer-grad-means"' in files.html.read_text()


def test_cli_report_compares_two_studies_side_by_side(report, tmp_path, capsys):
    _, _, store = report
    other = {**STUDY, "name": "wider", "base": {**STUDY["base"], "model": {"kind": "mlp", "hidden": [64] * 2}},
             "seeds": 1, "report": []}
    run_study(other, store=store)
    path_a, path_b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    import yaml

    path_a.write_text(yaml.safe_dump(STUDY))
    path_b.write_text(yaml.safe_dump(other))
    out = tmp_path / "both"
    assert main(["report", str(path_a), str(path_b), "--store", str(store), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    for label in ("depth-activation: activation=relu", "wider: activation=sigmoid"):
        assert label in html


def test_every_declared_section_has_a_builder():
    from trainlab.report.build import BUILDERS

    assert list(BUILDERS) == list(SECTIONS)


def test_a_failed_build_leaves_the_previous_report(report, monkeypatch):
    _, files, store = report
    before = files.html.read_bytes()
    from trainlab.report import build

    def broken(data, options):
        raise RuntimeError("figure failed")
    monkeypatch.setitem(build.BUILDERS, "runtime", broken)
    with pytest.raises(RuntimeError):
        build_report(STUDY, store=store)
    assert files.html.read_bytes() == before
    assert not [p for p in Path(files.html).parent.parent.iterdir() if p.name.startswith(".")]


def test_report_out_refuses_a_folder_or_file_it_would_delete_and_replaces_an_earlier_report(
        report, tmp_path, capsys, monkeypatch):
    _, files, store = report
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(STUDY))
    own = tmp_path / "mydocs"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    afile = tmp_path / "afile"
    afile.write_text("mine too")
    monkeypatch.chdir(own)
    for out, expected in [(own, "holds files that are not a trainlab report (notes.txt)"),
                          (".", "holds files that are not a trainlab report (notes.txt)"), (afile, "is a file")]:
        assert main(["report", str(path), "--store", str(store), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert (own / "notes.txt").read_text() == "mine" and afile.read_text() == "mine too"
    assert sorted(p.name for p in own.iterdir()) == ["notes.txt"]
    earlier = tmp_path / "earlier"
    for _ in range(2):  # new, then the earlier report replaced
        assert main(["report", str(path), "--store", str(store), "--out", str(earlier)]) == 0
        assert sorted(p.name for p in earlier.iterdir()) == ["figures", "report.html", "report.md"]


@pytest.mark.parametrize("entries, expected", [
    (["findings", "learning_curve"], "did you mean 'learning_curves'"),
    ([{"final_metrics": {"metrc": "test_acc"}}], "did you mean 'metric'"),
    ([{"findings": {"metric": "lr"}}], "unknown metric in report section findings: 'lr'"),
    ([{"analyses": {"top_kk": 3}}], "did you mean 'top_k'"),
    ([{"gradient_norms": {"layer": "fc1"}}, {"gradient_norms": {"layer": "out"}}], "'gradient_norms' is listed twice"),
])
def test_report_list_mistakes_are_user_errors(tmp_path, capsys, entries, expected):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "report": entries}))
    assert main(["report", str(path), "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


def test_report_of_a_study_with_no_runs_is_a_user_error(tmp_path, capsys):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    RunStore(tmp_path)  # a store, without this study's runs
    assert main(["report", str(path), "--store", str(tmp_path)]) == 2
    assert "has no runs in store" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


TINY_STUDY = {
    "name": "tiny",
    "base": {"data": {"name": "synthetic", "val_size": 32, "synthetic": {"n_train": 96, "n_test": 32}},
             "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 32}},
    "variants": [{"label": r"cost $\undefinedmacro$", "set": {"train.lr": 0.01}}, {"label": "plain"}],
}


def test_variant_labels_are_drawn_as_written_not_as_math(tmp_path, capsys):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(TINY_STUDY))
    assert main(["run", str(path), "--store", str(tmp_path / "store"), "--no-report"]) == 0
    assert main(["report", str(path), "--store", str(tmp_path / "store")]) == 0, capsys.readouterr().err
    html = (tmp_path / "store" / "reports" / "tiny" / "report.html").read_text()
    assert r"cost $\undefinedmacro$" in html and len(_images(html)) >= 5


def test_trainlab_run_judges_the_claims_once_and_reports_those_verdicts(tmp_path, capsys, monkeypatch):
    import yaml

    import trainlab.study.run as study_run

    calls, verdicts = [], study_run._verdicts
    monkeypatch.setattr(study_run, "_verdicts", lambda *a: (calls.append(a), verdicts(*a))[1])
    study = {**TINY_STUDY, "seeds": 2, "claims": [{"metric": "test_acc", "of": {"variant": "plain"}, "at_most": 1.0}]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["run", str(path), "--store", str(tmp_path / "store"), "--scale", "full"]) == 0
    assert len(calls) == 1  # by run_study; the report takes its result
    html = (tmp_path / "store" / "reports" / "tiny-full" / "report.html").read_text()
    assert "Study report: tiny (full)" in html and "test accuracy: variant=plain &lt;= 1" in html
    assert re.search(r"<p>1 claim: 1 (supported|contradicted|undecided)\.</p>", html)


def test_report_of_a_study_with_no_finished_run_is_a_user_error(tmp_path, capsys):
    import yaml

    from trainlab.store import RunStore
    from trainlab.study import plan_study

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(TINY_STUDY))
    store = RunStore(tmp_path / "store")
    spec, planned = plan_study(str(path))
    for run in planned:  # registered, as `trainlab run` does before training, but never trained
        store.create_run(run.run_id, run.config.to_dict())
        store.add_to_study(spec.name, run.run_id, run.label, run.seed, run.overrides)
    assert main(["report", str(path), "--store", str(tmp_path / "store")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no run of study 'tiny' has finished (2 pending)" in lines[0]
    assert not (tmp_path / "store" / "reports").exists()


def test_a_study_whose_runs_all_fail_exits_1_without_a_report(tmp_path, capsys, monkeypatch):
    import yaml

    def fail(*args, **kw):
        raise RuntimeError("worker died")

    monkeypatch.setattr("trainlab.train.record.train_run", fail)
    monkeypatch.setattr("trainlab.train.record.train_ensemble", fail)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(TINY_STUDY))
    with pytest.warns(UserWarning, match="2 of 2 runs failed"):
        assert main(["run", str(path), "--store", str(tmp_path / "store"), "--no-ensemble"]) == 1
    assert "2 failed" in capsys.readouterr().out
    assert not (tmp_path / "store" / "reports").exists()




# 2 x 2 variants with long names, as a study of two factors has them: the layout's hard case
TWO_FACTORS = {
    "name": "two-factors",
    "base": {"data": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [32, 32, 32]},
             "train": {"epochs": 2, "batch_size": 64}},
    "vary": {"model.activation": ["sigmoid", "leaky_relu"], "train.optimizer": ["sgd", "adam"]},
    "seeds": 2,
    "report": [*DEFAULT_SECTIONS, {"analyses": {"what": ["guided_backprop", "confusion"], "runs": "all"}}],
}


@pytest.fixture(scope="module")
def two_factors(tmp_path_factory):
    """The TWO_FACTORS report, and every matplotlib figure saved while building it."""
    from matplotlib.figure import Figure

    store = tmp_path_factory.mktemp("store")
    run_study(TWO_FACTORS, store=store)
    figures, savefig = [], Figure.savefig
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", lambda fig, *a, **kw: (figures.append(fig), savefig(fig, *a, **kw))[1])
        files = build_report(TWO_FACTORS, store=store)
    return files, figures


def test_no_text_of_any_report_figure_overlaps_another(two_factors):
    files, figures = two_factors
    assert len(figures) == len(_images(files.html.read_text())) >= 10
    for fig in figures:
        assert overlapping_texts(fig) == [], fig.get_suptitle() or fig.axes[0].get_title()


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed")
@pytest.mark.parametrize("width", [1280, 800])
def test_the_report_fits_the_browser_window_and_no_text_overlaps(two_factors, width):
    files, _ = two_factors
    (overflow, wide, overlaps, blocks), errors, _ = in_chromium(files.html, LAYOUT, width,
                                                                 screenshot=gallery_shot("report-2x2", width))
    assert blocks > 50 and errors == []
    assert overflow <= 0 and wide == 0 and overlaps == []
    columns, _, _ = in_chromium(files.html, GALLERY_COLUMNS, width)
    assert columns == [2 if width == 1280 else 1] * 2  # guided backprop, confusion: a variant each, side by side
    (before, after, row), _, _ = in_chromium(files.html, ENLARGE, width)
    assert after == pytest.approx(row, abs=2) and (before < row / 2 if width == 1280 else before == after)


def test_each_analysis_of_every_variant_is_one_gallery(two_factors):
    files, _ = two_factors
    html = files.html.read_text()
    analyses = html[html.index('<section id="analyses"'):]
    galleries = re.findall(r'<div class="cells">(.*?)</div>', analyses)
    labels = [f"activation={a}, optimizer={o}" for a in ("sigmoid", "leaky_relu") for o in ("sgd", "adam")]
    assert len(galleries) == 2 and all(len(_images(g)) == 4 for g in galleries)
    for gallery in galleries:  # the variants in the study's order, each captioned with its label
        captions = re.findall(r"<figcaption>([^<]*)</figcaption>", gallery)
        assert captions == labels


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_html_loads_in_headless_chromium_without_errors_or_broken_images(report):
    _, files, _ = report
    images, errors, title = in_chromium(
        files.html, "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert title == "Study report: depth-activation"
    assert len(images) == len(_images(files.html.read_text())) == 10
    assert all(complete and width > 0 and height > 0 for complete, width, height in images)
    assert errors == []


def test_the_runtime_section_says_which_runs_shared_an_ensemble(report):
    result, files, store = report
    section = files.html.read_text().split("<h2>Runtime</h2>")[1].split("</section>")[0]
    together = {label: RunStore(store).history(run_id)["runs_together"].max()
                for label, run_id in zip(result.runs["label"], result.runs["run_id"])}
    assert "median epoch time" in section and "FLOPs of training on one image" in section
    for label, n in together.items():
        assert (f"{label} ({n:.0f})" in section) == (n > 1)
    assert max(together.values()) == 3  # the digits MLPs train as ensembles of their 3 seeds on a CPU


def test_runtime_notes_name_the_variants_timed_on_a_busy_machine():
    from trainlab.report.build import _runtime_notes

    runs = pd.DataFrame({"label": ["a", "a", "b"], "epoch_time": [1.0, 1.1, 2.0], "together": [1, 1, 1],
                         "elsewhere": [0.5, 0.1, 0.05]})
    (note,) = _runtime_notes(runs)
    assert "busy" in note.text and "a (50%)" in note.text and "b (" not in note.text
