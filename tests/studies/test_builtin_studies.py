"""The built-in studies: every one expands; quickstart and the fastest quick scales (on the real
data in ``../shared``) run in the default suite, the other quick scales with ``pytest -m studies``."""

import base64
import io
import json
import os
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from trainlab.cli import main
from trainlab.report import build_report
from trainlab.study import builtin_studies, plan_study, run_study
from trainlab.study.spec import STUDIES_DIR
from tests.browser import CHROMIUM, DRIVER, LAYOUT, gallery_shot, in_chromium
from tests.shared_data import SHARED_DATA, cifar10_jpeg_tree, shared

NAMES = sorted(path.stem for path in STUDIES_DIR.glob("*.yaml"))


def test_every_builtin_study_is_listed_and_expands_at_every_scale(capsys):
    assert "quickstart" in NAMES
    specs = {spec.name: spec for spec in builtin_studies()}
    assert sorted(specs) == NAMES  # each file's name is its study's name
    for name, spec in specs.items():
        assert spec.question and spec.source, name
        assert spec.claims, name  # every study states what its report claims
        if name != "quickstart":
            assert {"quick", "medium"} <= set(spec.scales), name
        for scale in [None, *spec.scales]:
            _, runs = plan_study(name, scale)
            assert runs and len({r.run_id for r in runs}) == len(runs), (name, scale)
    assert main(["studies", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in listed] == NAMES


def _report_ok(html_path: Path) -> str:
    html = html_path.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert images
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.load()
    return html


def test_quickstart_trains_probes_finds_and_analyses(tmp_path, capsys):
    assert main(["run", "quickstart", "--store", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "report:" in out
    html = _report_ok(tmp_path / "reports" / "quickstart" / "report.html")
    findings = html.split("<h2>Findings</h2>")[1].split("</section>")[0]
    assert "activation=sigmoid: vanishing gradients" in findings
    # five seeds decide the quickstart's claims: sigmoid stays far below ReLU and tanh, its gradients vanish
    claims = html.split("<h2>Claims and verdicts</h2>")[1].split("</section>")[0]
    assert "5 claims: 5 supported." in claims and "A six-layer sigmoid MLP barely learns" in claims
    assert "claims (family-wise error 0.05" in out and out.count(" supported ") == 5
    assert "activation=relu: vanishing gradients" not in findings
    for figure in ("fig-learning-curves", "fig-layer-grad-means", "fig-embeddings", "fig-confusion",
                   "fig-guided-backprop"):
        assert figure in html, figure
    if CHROMIUM and DRIVER:  # as a user sees it: nothing wider than the page, no text over other text
        report = tmp_path / "reports" / "quickstart" / "report.html"
        (overflow, wide, overlaps, _), errors, _ = in_chromium(report, LAYOUT,
                                                               screenshot=gallery_shot("report-quickstart", 1280))
        assert overflow <= 0 and wide == 0 and overlaps == [] and errors == []


def _data_overrides(name: str) -> list[str]:
    """Where each built-in study's data set lives in ``../shared`` (FashionMNIST: MNIST's files)."""
    _, runs = plan_study(name, "quick")
    data = runs[0].config.data.name
    if data == "cifar10":
        return [f"data.root={cifar10_jpeg_tree()}"]
    if data in ("mnist", "fashion_mnist"):
        shared("MNIST/raw")
        return ["data.name=mnist", f"data.root={SHARED_DATA}"]
    if data == "gurmukhi":
        return [f"data.root={shared('gurmukhi')}"]
    return []


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One data cache for the module: each real data set is decoded once, not once per study."""
    return tmp_path_factory.mktemp("cache")


# Quick scales that take under about 20 s run in the default suite; the rest under -m studies.
FAST = {"002-equivariance", "002-normalisation-lr", "002-deep-narrow-mlp", "002-mlp-vs-cnn", "003-tsne"}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.studies)
                                  for n in NAMES if n != "quickstart"])
def test_quick_scale_runs_and_reports(name, tmp_path, shared_cache, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE", str(shared_cache))
    overrides = _data_overrides(name)
    start = time.perf_counter()
    result = run_study(name, "quick", overrides, store=tmp_path)
    assert set(result.runs["status"]) <= {"done", "diverged"}, result.runs[["label", "status"]]
    files = build_report(name, store=tmp_path, scale="quick", overrides=overrides)
    seconds = time.perf_counter() - start
    html = _report_ok(files.html)
    assert "<h2>Findings</h2>" in html and "<h2>Final metrics</h2>" in html
    if os.environ.get("TRAINLAB_STUDY_RESULTS"):  # for docs/reproductions.md and the studies' run_time
        out = Path(os.environ["TRAINLAB_STUDY_RESULTS"])
        out.mkdir(parents=True, exist_ok=True)
        runs = result.runs[[c for c in ("label", "seed", "status", "test_acc", "val_acc", "train_acc")
                            if c in result.runs.columns]]
        (out / f"{name}.json").write_text(json.dumps({"seconds": seconds, "runs": runs.to_dict(orient="records")}))
