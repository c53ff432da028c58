import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import tiny_config
from trainlab.train.bookkeeping import TIMING as TIMING_METRICS
from trainlab.analysis.embeddings import features, load_embeddings, plot_embeddings, project, sample_indices
from trainlab.config import load_config
from trainlab.data import load_data, to_float
from trainlab.errors import UserError
from trainlab.models import create_model
from trainlab.train import train_run

TIMING = list(TIMING_METRICS)


def _model_and_data():
    cfg = load_config(tiny_config())
    data = load_data(cfg.data)
    torch.manual_seed(0)
    model = create_model(cfg.model, data.input_shape, data.num_classes)
    return model, data


def test_default_features_are_the_input_of_the_output_layer():
    model, data = _model_and_data()
    model.train()
    got = features(model, data.test.x, data.mean, data.std, batch_size=7)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        direct = model[:-1](to_float(data.test.x, data.mean, data.std))  # everything before ``out``
    assert list(dict(model.named_children()))[-1] == "out"
    assert torch.allclose(got, direct, atol=1e-6)
    assert got.shape == (len(data.test), 32)


def test_named_layer_features_and_unknown_layer():
    model, data = _model_and_data()
    got = features(model, data.test.x, data.mean, data.std, layer="act1")
    names = list(dict(model.named_children()))
    upto = names.index("act1") + 1
    model.eval()
    with torch.no_grad():
        direct = model[:upto](to_float(data.test.x, data.mean, data.std))
    assert torch.allclose(got, direct, atol=1e-6)
    with pytest.raises(UserError, match="unknown probes.embedding_layer 'act9'.*act1"):
        features(model, data.test.x, data.mean, data.std, layer="act9")


def test_embeddings_saved_at_chosen_epochs_same_images_training_unchanged(tmp_path):
    raw = tiny_config(epochs=3)
    plain = train_run(load_config(raw))
    raw["probes"] = {"embeddings_at": [0, 2, 3], "embedding_samples": 50}
    cfg = load_config(raw)
    result = train_run(cfg, run_dir=tmp_path)
    pd.testing.assert_frame_equal(plain.history.drop(columns=TIMING), result.history.drop(columns=TIMING))

    saved = load_embeddings(tmp_path)
    assert list(saved) == [0, 2, 3]
    data = load_data(cfg.data)
    expected = sample_indices(len(data.test), 50).numpy()
    for epoch in saved.values():
        assert np.array_equal(epoch["indices"], expected)
        assert np.array_equal(epoch["labels"], data.test.y[expected].numpy())
    # epoch 0 is the freshly initialised model, the last epoch the trained one
    torch.manual_seed(cfg.train.seed)
    fresh = create_model(cfg.model, data.input_shape, data.num_classes)
    x = data.test.x[torch.from_numpy(expected)]
    assert np.allclose(saved[0]["features"], features(fresh, x, data.mean, data.std).numpy(), atol=1e-6)
    assert np.allclose(saved[3]["features"], features(result.model, x, data.mean, data.std).numpy(), atol=1e-6)
    assert not np.allclose(saved[0]["features"], saved[3]["features"])

    in_memory = train_run(cfg)  # no run folder: kept on the result
    assert sorted(in_memory.embeddings) == [0, 2, 3]
    assert np.allclose(in_memory.embeddings[2].numpy(), saved[2]["features"], atol=1e-6)


def test_embedding_epochs_after_the_last_are_refused():
    raw = tiny_config(epochs=2)
    raw["probes"] = {"embeddings_at": [0, 5]}
    with pytest.raises(UserError, match=r"embeddings_at has epochs \[5\]"):
        load_config(raw)


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_projection_keeps_separated_classes_apart(method):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, size=(3, 20))
    labels = np.repeat(np.arange(3), 40)
    feats = centres[labels] + rng.normal(0, 0.5, size=(120, 20))
    xy = project(feats, method, seed=0)
    assert xy.shape == (120, 2)
    dist = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    assert (labels[dist.argmin(1)] == labels).mean() > 0.95  # nearest neighbour in 2-D is of the same class
    assert np.allclose(project(feats, method, seed=0), xy)  # seeded: reproducible
    with pytest.raises(UserError, match="valid choices: pca, tsne"):
        project(feats, "umap")


def test_embedding_figure_has_a_panel_per_epoch_and_a_colour_per_class(tmp_path):
    from PIL import Image

    labels = np.repeat(np.arange(3), 10)
    projections = {e: np.random.default_rng(e).normal(size=(30, 2)) for e in (0, 5, 10)}
    fig = plot_embeddings(projections, labels, ["a", "b", "c"])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["before training", "epoch 5", "epoch 10"]
    assert (visible[0].get_xlabel(), visible[0].get_ylabel()) == ("t-SNE 1", "t-SNE 2")
    colours = [tuple(np.round(c.get_facecolor()[0], 3)) for c in visible[0].collections]
    assert len(set(colours)) == 3
    assert colours == [tuple(np.round(c.get_facecolor()[0], 3)) for c in visible[2].collections]
    fig.savefig(tmp_path / "e.png")
    assert Image.open(tmp_path / "e.png").convert("RGB").size[0] > 100


def test_tsne_perplexity_and_iterations_reach_scikit_learn():
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    feats = np.random.default_rng(3).normal(size=(40, 6)).astype(np.float32)
    ours = project(feats, "tsne", seed=2, perplexity=7, iterations=300)
    with threadpool_limits(limits=1, user_api="openmp"):  # as project() runs it; fast beside torch's threads
        direct = TSNE(n_components=2, init="pca", perplexity=7.0, max_iter=300,
                      random_state=2).fit_transform(feats)
    np.testing.assert_allclose(ours, direct, rtol=1e-5, atol=1e-5)
    # the options matter: another perplexity or iteration count gives another map
    assert not np.allclose(ours, project(feats, "tsne", seed=2, perplexity=12, iterations=300), atol=1e-3)
    assert not np.allclose(ours, project(feats, "tsne", seed=2, perplexity=7, iterations=250), atol=1e-3)
    # without a perplexity: scikit-learn's 30 lowered to (N - 1) / 3 for few points, here 13
    with threadpool_limits(limits=1, user_api="openmp"):
        default = TSNE(n_components=2, init="pca", perplexity=13.0, max_iter=300,
                       random_state=0).fit_transform(feats)
    np.testing.assert_allclose(project(feats, "tsne", iterations=300), default, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("perplexity, iterations, expected", [
    (40, 1000, r"perplexity 40 must be below the number of points projected \(40\)"),
    (0, 1000, "perplexity must be a number above 0, got 0"),
    (5, 249, "tsne_iterations must be a whole number of at least 250, got 249"),
])
def test_tsne_settings_scikit_learn_refuses_are_user_errors(perplexity, iterations, expected):
    with pytest.raises(UserError, match=expected):
        project(np.zeros((40, 3)), "tsne", perplexity=perplexity, iterations=iterations)
