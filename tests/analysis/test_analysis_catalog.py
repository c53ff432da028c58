import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from trainlab.analysis.catalog import ANALYSES, AnalysisOptions
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
    assert top_k.endswith(f"neurons: images per channel (default: {AnalysisOptions().top_k})")
    images = next(line for line in lines if line.strip().startswith("--images"))
    assert "guided_backprop, saliency, equivariance: " in images  # the analyses that declare the option


def test_analysis_captions_name_the_chosen_target():
    assert ANALYSES["saliency"].caption("saliency", AnalysisOptions()) == "input-gradient saliency for the true class"
    assert ANALYSES["guided_backprop"].caption("guided_backprop", AnalysisOptions(target="act2:3")) == (
        "guided backpropagation for target act2:3")


@pytest.mark.parametrize("argv, expected", [
    (["--what", "filterz"], "unknown analysis 'filterz' (did you mean 'filters'?); valid choices: confusion, "),
    (["--channels", "3,x"], "--channels '3,x': expected comma-separated channel numbers, e.g. 3,17"),
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
