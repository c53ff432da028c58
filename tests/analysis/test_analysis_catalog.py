import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from trainlab.analysis.attribution import guided_backprop, saliency
from trainlab.analysis.catalog import ANALYSES, AnalysisOptions, equivariance_errors
from trainlab.analysis.equivariance import rotate, shared_conv, shift
from trainlab.analysis.neurons import interesting_channels, top_activations
from trainlab.errors import UserError
from trainlab.probes.embeddings import load_embeddings, sample_indices
from trainlab.study.report_sections import section_options
from trainlab.cli import build_parser, main
from trainlab.config import load_config
from trainlab.data import load_data, to_float
from trainlab.models import create_model
from trainlab.store import RunStore
from trainlab.train import fit
from trainlab.train.checkpoint import load_checkpoint

CNN_RUN = {
    "data": {"name": "synthetic", "val_size": 32,
             "synthetic": {"n_train": 192, "n_test": 64, "channels": 3, "size": 12, "classes": 3}},
    "model": {"kind": "cnn", "blocks": [{"channels": 8, "pool": "max"}, {"channels": 8}], "fc": [16]},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01},
    "probes": {"embeddings_at": [0, 2], "embedding_samples": 40},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    result = fit(CNN_RUN, store=store)
    return store, result.run_id


def test_analyze_writes_decodable_pngs_and_data_recorded_in_the_store(trained, capsys):
    store, run_id = trained
    assert main(["analyze", run_id[:6], "--store", str(store), "--json", "--images", "4", "--top-k", "3"]) == 0
    written = pd.DataFrame(json.loads(capsys.readouterr().out))
    assert set(written["analysis"]) == {"filters", "neurons", "embeddings", "guided_backprop", "saliency",
                                        "equivariance", "confusion"}
    figures = written[written["kind"] == "figure"]
    for path in figures["path"]:
        with Image.open(path) as image:
            image.load()  # decodes the whole PNG
            assert image.format == "PNG" and min(image.size) > 100
    recorded = RunStore(store).artifacts(run_id)
    assert set(recorded["name"]) == set(written["name"])
    # each figure has the caption its analysis declares; neurons looked after the last conv's activation
    assert all(row.name in ANALYSES[row.analysis].captions for row in figures.itertuples())
    neurons = pd.read_csv(written.set_index("name").loc["neurons.csv", "path"])
    assert set(neurons["layer"]) == {"act2"}

    # the confusion table is the model's predictions on the test split
    cfg = load_config(CNN_RUN)
    data = load_data(cfg.data)
    model = create_model(cfg.model, data.input_shape, data.num_classes)
    model.load_state_dict(load_checkpoint(RunStore(store).run_dir(run_id))["model"])
    with torch.no_grad():
        predicted = model.eval()(to_float(data.test.x, data.mean, data.std)).argmax(1)
    direct = np.zeros((3, 3), dtype=int)
    np.add.at(direct, (data.test.y.numpy(), predicted.numpy()), 1)
    table = pd.read_csv(written.set_index("name").loc["confusion.csv", "path"]).set_index("true")
    assert np.array_equal(table.to_numpy(), direct)

    # attributions have the inputs' shape
    saved = np.load(written.set_index("name").loc["guided_backprop.npz", "path"])
    assert saved["attributions"].shape == (4, 3, 12, 12)


def test_analyze_a_chosen_neuron_and_channels(trained, capsys):
    store, run_id = trained
    assert main(["analyze", run_id, "--store", str(store), "--what", "neurons,guided_backprop",
                 "--layer", "act1", "--channels", "0,5", "--target", "act2:3", "--json"]) == 0
    written = pd.DataFrame(json.loads(capsys.readouterr().out)).set_index("name")
    neurons = pd.read_csv(written.loc["neurons.csv", "path"])
    assert set(neurons["layer"]) == {"act1"} and sorted(set(neurons["channel"])) == [0, 5]


@pytest.mark.parametrize("argv, expected", [
    (["--what", "filterz"], "unknown analysis 'filterz' (did you mean 'filters'?)"),
    (["--projection", "umap"], "valid choices: pca, tsne"),
    (["--layer", "conv9"], "unknown layer 'conv9'"),
    (["--target", "act2:x"], "must be a number"),
    (["--target", "7"], "neither a class index (0..2)"),
    (["--target", "act2:top9"], "target 'act2:top9': layer 'act2' has 8 channels (0..7)"),
    (["--target", "act2:3,8"], "layer 'act2' has 8 channels (0..7)"),
    (["--target", "act2:8"], "layer 'act2' has 8 channels (0..7)"),
    (["--target", "act2:top0"], "must be a number, several numbers or topN, e.g. conv3:12, conv3:3,17,42 or"),
    (["--what", "equivariance", "--layer", "conv2", "--shifts", "2,3"],
     "equivariance compares no layer for a shift by 3: conv2: its cumulative stride 2x2 does not divide"),
    (["--shifts", "0"], "shifts must be a list of whole pixel counts of at least 1"),
    (["--rotations", "1,0"], "rotations must be a list of non-zero quarter turns"),
    (["--rows", "classes"], "unknown rows 'classes' (did you mean 'class'?); valid choices: channel, class"),
    (["--equivariance-of", "fresh"], "unknown equivariance_of 'fresh'; valid choices: run, shared_conv"),
    (["--perplexity", "40"], "perplexity 40 must be below the number of points projected (40)"),
    (["--tsne-iterations", "100"], "tsne_iterations must be a whole number of at least 250, got 100"),
])
def test_user_mistakes_exit_2_and_write_nothing(trained, capsys, argv, expected):
    store, run_id = trained
    before = RunStore(store).artifacts(run_id)
    assert main(["analyze", run_id, "--store", str(store), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    pd.testing.assert_frame_equal(RunStore(store).artifacts(run_id), before)


def test_conv_analyses_on_an_mlp_are_refused(tmp_path, capsys):
    run = {**CNN_RUN, "model": {"kind": "mlp", "hidden": [16]}, "probes": {}}
    run_id = fit(run, store=tmp_path).run_id
    assert main(["analyze", run_id, "--store", str(tmp_path), "--what", "filters"]) == 2
    assert "filters does not apply" in capsys.readouterr().err
    assert main(["analyze", run_id, "--store", str(tmp_path), "--json"]) == 0  # default: what applies
    names = {row["analysis"] for row in json.loads(capsys.readouterr().out)}
    assert names == {"guided_backprop", "saliency", "confusion"}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_guided_backprop_of_a_net_without_relus_is_named_the_plain_gradient(tmp_path, capsys, activation):
    run = {**CNN_RUN, "model": {"kind": "mlp", "hidden": [16], "activation": activation}, "probes": {}}
    run_id = fit(run, store=tmp_path).run_id
    written = _analyze(tmp_path, run_id, capsys, "--what", "guided_backprop,saliency", "--images", "4")
    figure = "guided_backprop" if activation == "relu" else "guided_backprop_plain"
    assert set(written.index) == {figure, "guided_backprop.npz", "saliency", "saliency.npz"}
    caption = ANALYSES["guided_backprop"].caption(figure, AnalysisOptions())
    assert caption.startswith("guided backpropagation" if activation == "relu" else "plain input gradient")
    guided = np.load(written.loc["guided_backprop.npz", "path"])["attributions"]
    gradient = np.load(written.loc["saliency.npz", "path"])["attributions"]  # |gradient|
    assert np.array_equal(np.abs(guided), gradient) == (activation == "tanh")


def test_default_analyses_of_a_resnet_skip_receptive_fields(tmp_path, capsys):
    run = {**CNN_RUN, "model": {"kind": "resnet", "stem_channels": 4,
                                "stages": [{"channels": 4, "blocks": 1}, {"channels": 8, "blocks": 1, "stride": 2}]},
           "probes": {}}
    run_id = fit(run, store=tmp_path).run_id
    assert main(["analyze", run_id, "--store", str(tmp_path), "--json", "--images", "2"]) == 0
    names = {row["analysis"] for row in json.loads(capsys.readouterr().out)}
    assert names == {"filters", "guided_backprop", "saliency", "equivariance", "confusion"}
    assert main(["analyze", run_id, "--store", str(tmp_path), "--what", "neurons"]) == 2
    assert "receptive fields need a plain chain" in capsys.readouterr().err


def test_analyze_flags_and_defaults_come_from_analysis_options(capsys, monkeypatch):
    parser = build_parser()
    given = vars(parser.parse_args(["analyze", "r"]))
    assert AnalysisOptions.of(given, flags=True) == AnalysisOptions()
    assert AnalysisOptions.of({"channels": ""}) == AnalysisOptions()  # an empty --channels: the default
    given = vars(parser.parse_args(["analyze", "r", "--top-k", "3", "--channels", "3,17", "--seed", "2"]))
    assert AnalysisOptions.of(given, flags=True) == AnalysisOptions(top_k=3, channels=[3, 17], seed=2)
    monkeypatch.setenv("COLUMNS", "300")  # one line per flag
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    lines = capsys.readouterr().out.splitlines()
    top_k = next(line for line in lines if line.strip().startswith("--top-k"))
    assert top_k.endswith(f"neurons, guided_backprop, saliency: images per channel (per neuron of a "
                          f"several-neuron target) (default: {AnalysisOptions().top_k})")
    images = next(line for line in lines if line.strip().startswith("--images"))
    assert "guided_backprop, saliency, equivariance: " in images  # the analyses that declare the option


def test_analysis_captions_name_the_chosen_target():
    assert ANALYSES["saliency"].caption("saliency", AnalysisOptions()) == "input-gradient saliency for the true class"
    assert ANALYSES["guided_backprop"].caption("guided_backprop", AnalysisOptions(target="act2:3")) == (
        "guided backpropagation for target act2:3")


@pytest.mark.parametrize("argv, expected", [
    (["--what", "filterz"], "unknown analysis 'filterz' (did you mean 'filters'?); valid choices: confusion, "),
    (["--channels", "3,x"], "--channels '3,x': expected comma-separated channel numbers, e.g. 3,17"),
    (["--shifts", "2,4.5"], "--shifts '2,4.5': expected comma-separated whole pixel counts, e.g. 2,4,8"),
    (["--rotations", "1,half"], "--rotations '1,half': expected comma-separated quarter turns, e.g. 1,0.5"),
    (["--perplexity", "lots"], "--perplexity 'lots': expected a number, e.g. 30"),
])
def test_option_mistakes_exit_2_before_the_run_is_read(tmp_path, capsys, argv, expected):
    assert main(["analyze", "no-such-run", "--store", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


def test_class_names_are_drawn_as_written_not_as_math(tmp_path, capsys):
    rng = np.random.default_rng(0)
    names = [r"cost $\undefinedmacro$", "plain"]
    for split, count in (("train", 8), ("test", 4)):
        for name in names:
            for i in range(count):
                (tmp_path / "tree" / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(
                    tmp_path / "tree" / split / name / f"{i}.png")
    run = {"data": {"name": "imagefolder", "root": str(tmp_path / "tree"), "val_size": 0},
           "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 8},
           "probes": {"embeddings_at": [1], "embedding_samples": 8}}
    run_id = fit(run, store=tmp_path / "store").run_id
    argv = ["analyze", run_id, "--store", str(tmp_path / "store"), "--what", "confusion,saliency,embeddings"]
    assert main([*argv, "--images", "4", "--projection", "pca", "--json"]) == 0, capsys.readouterr().err
    written = {row["analysis"] for row in json.loads(capsys.readouterr().out)}
    assert written == {"confusion", "saliency", "embeddings"}


def test_a_run_whose_data_has_moved_is_analysed_with_data_root(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for split, count in (("train", 8), ("test", 4)):
        for name in ("a", "b"):
            (tmp_path / "tree" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(
                    tmp_path / "tree" / split / name / f"{i}.png")
    run = {"data": {"name": "imagefolder", "root": str(tmp_path / "tree"), "val_size": 0, "cache": False},
           "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 8}}
    run_id = fit(run, store=tmp_path / "store").run_id
    argv = ["analyze", run_id, "--store", str(tmp_path / "store"), "--what", "confusion", "--json"]

    def confusion_data() -> dict[str, bytes]:
        rows = json.loads(capsys.readouterr().out)
        return {Path(r["path"]).name: Path(r["path"]).read_bytes() for r in rows if r["kind"] != "figure"}
    assert main(argv) == 0
    before = confusion_data()
    (tmp_path / "tree").rename(tmp_path / "moved")
    assert main(argv) == 2
    assert "tree does not exist: pass --data-root DIR" in capsys.readouterr().err
    assert main([*argv, "--data-root", str(tmp_path / "moved")]) == 0
    assert confusion_data() == before and before


def _trained_model(store, run_id):
    """The fixture run's model from its checkpoint, in eval mode, and its data."""
    cfg = load_config(CNN_RUN)
    data = load_data(cfg.data)
    model = create_model(cfg.model, data.input_shape, data.num_classes)
    model.load_state_dict(load_checkpoint(RunStore(store).run_dir(run_id))["model"])
    return model.eval(), data


def _analyze(store, run_id, capsys, *argv):
    assert main(["analyze", run_id, "--store", str(store), "--json", *argv]) == 0, capsys.readouterr().err
    return pd.DataFrame(json.loads(capsys.readouterr().out)).set_index("name")


def test_equivariance_of_a_chosen_layer_at_chosen_shifts_and_rotations(trained, capsys):
    store, run_id = trained
    written = _analyze(store, run_id, capsys, "--what", "equivariance", "--layer", "conv2", "--shifts", "2,4",
                       "--rotations", "1,0.5", "--images", "3")
    figures = ["equivariance_shift_2px", "equivariance_shift_4px", "equivariance_rotate_90deg",
               "equivariance_rotate_45deg"]
    assert list(written[written.kind == "figure"].index) == figures
    table = pd.read_csv(written.loc["equivariance.csv", "path"])
    assert list(zip(table.layer, table["transform"], table.amount)) == [
        ("conv2", "shift", 2), ("conv2", "shift", 4), ("conv2", "rotate", 1), ("conv2", "rotate", 0.5)]
    model, data = _trained_model(store, run_id)
    x = to_float(data.test.x[sample_indices(len(data.test), 3, 0)], data.mean, data.std)
    with torch.no_grad():
        conv2 = model[:4]  # conv1, act1, pool1 (stride 2), conv2
        direct = [(conv2(shift(x, s, s)) - shift(conv2(x), s // 2, s // 2)).abs().mean() for s in (2, 4)]
        direct += [(conv2(rotate(x, q)) - rotate(conv2(x), q)).abs().mean() for q in (1, 0.5)]
    np.testing.assert_allclose(table.error, [d.item() for d in direct], rtol=1e-5)
    caption = ANALYSES["equivariance"].caption("equivariance_shift_2px", AnalysisOptions())
    assert caption == "feature maps of a shifted input vs shifted feature maps, and their difference (2px)"


def test_equivariance_errors_for_claims_are_the_first_convs_relative_errors(trained):
    store, run_id = trained
    errors = equivariance_errors(RunStore(store), run_id)
    model, data = _trained_model(store, run_id)
    x = to_float(data.test.x[sample_indices(len(data.test), AnalysisOptions().images, 0)], data.mean, data.std)
    with torch.no_grad():
        conv1 = model[0]
        plain = conv1(x)
        step = x.shape[-1] // 8  # 12 px wide: a shift by 1
        direct = {"shift": (conv1(shift(x, step, step)) - shift(plain, step, step)).abs().mean(),
                  "rotate": (conv1(rotate(x, 1)) - rotate(plain, 1)).abs().mean()}
    assert errors == pytest.approx({k: (v / plain.abs().mean()).item() for k, v in direct.items()}, rel=1e-5)
    assert errors["shift"] < errors["rotate"]  # a convolution commutes with shifts, not with rotations


def test_equivariance_of_report_002s_fresh_shared_conv(trained, capsys):
    store, run_id = trained
    written = _analyze(store, run_id, capsys, "--what", "equivariance", "--equivariance-of", "shared_conv",
                       "--shifts", "5", "--images", "2", "--seed", "3")
    table = pd.read_csv(written.loc["equivariance.csv", "path"])
    assert list(zip(table.layer, table["transform"])) == [
        ("act1", "shift"), ("act2", "shift"), ("act1", "rotate"), ("act2", "rotate")]
    _, data = _trained_model(store, run_id)
    x = to_float(data.test.x[sample_indices(len(data.test), 2, 3)], data.mean, data.std)
    probe = shared_conv(channels=3, seed=3)  # the same conv twice, freshly made from the seed
    once = lambda t: torch.relu(probe.conv(t))  # noqa: E731
    with torch.no_grad():
        direct = [(f(shift(x, 5, 5)) - shift(f(x), 5, 5)).abs().mean().item()
                  for f in (once, lambda t: once(once(t)))]
    np.testing.assert_allclose(table.error[:2], direct, rtol=1e-5)
    assert (table.relative_error[2:] > 0.05).all()  # not equivariant to a quarter turn
    options = AnalysisOptions(equivariance_of="shared_conv")
    caption = ANALYSES["equivariance"].caption("equivariance_rotate", options)
    assert caption.startswith("one fresh 3x3 conv applied twice (shared weights): feature maps of a rotated")


def test_guided_backprop_of_several_neurons_each_on_its_top_images(trained, capsys):
    store, run_id = trained
    written = _analyze(store, run_id, capsys, "--what", "guided_backprop,saliency", "--target", "act2:5,1",
                       "--top-k", "3")
    model, data = _trained_model(store, run_id)
    with torch.no_grad():
        peaks = model[:5](to_float(data.test.x, data.mean, data.std)).flatten(2).amax(2)  # images x channels
    for method in (guided_backprop, saliency):
        saved = np.load(written.loc[f"{method.__name__}.npz", "path"])
        assert list(saved["channels"]) == [5, 5, 5, 1, 1, 1]
        top3 = [peaks[:, channel].topk(3).indices.tolist() for channel in (5, 1)]
        assert list(saved["images"]) == top3[0] + top3[1]
        assert np.array_equal(saved["labels"], data.test.y[saved["images"]].numpy())
        for row, channel in enumerate((5, 1)):
            x = to_float(data.test.x[saved["images"][3 * row:3 * row + 3]], data.mean, data.std)
            alone = method(model, x, ("act2", channel, "max"))
            np.testing.assert_allclose(saved["attributions"][3 * row:3 * row + 3], alone.numpy(), atol=1e-6)
        with Image.open(written.loc[method.__name__, "path"]) as image:
            assert image.size[0] > 1.5 * image.size[1]  # 2 rows of 3 pairs: wider than tall
    top = _analyze(store, run_id, capsys, "--what", "guided_backprop", "--target", "act2:top2",
                   "--top-k", "3")
    table = top_activations(model, "act2", data.test.x, data.mean, data.std, k=3)
    expected = interesting_channels(table, 2)
    saved = np.load(top.loc["guided_backprop.npz", "path"])
    assert list(saved["channels"]) == [expected[0]] * 3 + [expected[1]] * 3


def test_neurons_with_a_row_per_class(trained, capsys):
    store, run_id = trained
    written = _analyze(store, run_id, capsys, "--what", "neurons", "--rows", "class", "--top-k", "2")
    table = pd.read_csv(written.loc["neurons.csv", "path"])
    _, data = _trained_model(store, run_id)
    assert sorted(set(table["class"])) == [0, 1, 2]
    assert (data.test.y.numpy()[table.image.to_numpy()] == table["class"].to_numpy()).all()
    per_class = table.groupby("class")
    assert (per_class.channel.nunique() == 1).all() and (per_class.size() == 2).all()
    caption = ANALYSES["neurons"].caption("neurons", AnalysisOptions(rows="class"))
    assert caption == ("the test image patches (each under its neuron's receptive field) that excite a neuron most; "
                       "rows: each class's most class-selective channel, on test images of that class only")
    assert ANALYSES["neurons"].caption("neurons", AnalysisOptions()).endswith("; rows: the most active channels")


def test_tsne_options_reach_scikit_learn(trained, capsys):
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    store, run_id = trained
    written = _analyze(store, run_id, capsys, "--what", "embeddings", "--perplexity", "5",
                       "--tsne-iterations", "300", "--seed", "1")
    saved = np.load(written.loc["embeddings.npz", "path"])
    features = load_embeddings(RunStore(store).run_dir(run_id))
    for projection, epoch in zip(saved["projections"], saved["epochs"]):
        tsne = TSNE(n_components=2, init="pca", perplexity=5.0, max_iter=300, random_state=1)
        with threadpool_limits(limits=1, user_api="openmp"):  # as project() runs it, fast beside torch
            direct = tsne.fit_transform(features[int(epoch)]["features"].astype(np.float32))
        np.testing.assert_allclose(projection, direct, rtol=1e-5, atol=1e-5)


def test_new_options_as_flags_and_in_a_study_report_section(capsys, monkeypatch):
    given = vars(build_parser().parse_args([
        "analyze", "r", "--shifts", "2,4", "--rotations", "1,0.5", "--perplexity", "5",
        "--tsne-iterations", "300", "--rows", "class", "--equivariance-of", "shared_conv",
        "--target", "act4:top10"]))
    assert AnalysisOptions.of(given, flags=True) == AnalysisOptions(
        shifts=[2, 4], rotations=[1, 0.5], perplexity=5.0, tsne_iterations=300, rows="class",
        equivariance_of="shared_conv", target="act4:top10")
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    lines = capsys.readouterr().out.splitlines()
    for flag, users in [("--shifts", "equivariance: "), ("--rotations", "equivariance: "),
                        ("--equivariance-of", "equivariance: "), ("--perplexity", "embeddings: "),
                        ("--tsne-iterations", "embeddings: "), ("--rows", "neurons: "),
                        ("--layer", "neurons, equivariance: ")]:
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(flag))
        assert users in " ".join(lines[at:at + 2])  # a long metavar puts the help on the next line
    # a study's report section: YAML lists and numbers, checked when the study is planned
    section = {"what": ["equivariance", "embeddings"], "shifts": [2, 4], "rotations": 0.5, "perplexity": 20,
               "equivariance_of": "shared_conv"}
    options = section_options("s", [{"analyses": section}])["analyses"]
    assert AnalysisOptions.of(options) == AnalysisOptions(shifts=[2, 4], rotations=[0.5], perplexity=20.0,
                                                          equivariance_of="shared_conv")
    for bad, expected in [({"shifts": [0]}, "shifts must be a list"), ({"rows": "klass"}, "unknown rows"),
                          ({"tsne_iterations": 10}, "at least 250"),
                          ({"what": ["equivariances"]}, "unknown analysis")]:
        with pytest.raises(UserError, match=expected):
            section_options("s", [{"analyses": bad}])
