"""The catalog: synthetic generation and loading from a table."""

from __future__ import annotations

import numpy as np
import pytest

from recoworld import Catalog


def test_synthetic_catalog_shapes_and_invariants() -> None:
    c = Catalog.synthetic(1000, n_topics=8, dim=16, n_creators=50, seed=3)
    assert c.embeddings.shape == (1000, 16) and c.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(c.embeddings, axis=1), 1.0, atol=1e-5)
    assert set(np.unique(c.topic)) == set(range(8))
    assert abs(c.popularity.sum() - 1.0) < 1e-9 and (c.popularity > 0).all()
    assert 0 <= c.quality.min() and c.quality.max() <= 1
    assert (c.length > 0).all() and c.creator.max() < 50
    assert c.title[0] and c.text[0] and c.topic_names[0] in c.text[c.topic == 0][0]
    assert c.item_features.shape == (1000, 19)
    assert not c.embeddings.flags.writeable


def test_synthetic_catalog_is_topic_clustered_and_deterministic() -> None:
    a = Catalog.synthetic(600, n_topics=6, seed=1)
    b = Catalog.synthetic(600, n_topics=6, seed=1)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    sims = a.embeddings @ a.embeddings.T
    same = a.topic[:, None] == a.topic[None, :]
    assert sims[same].mean() > sims[~same].mean() + 0.4
    # each creator publishes in (mostly) one topic
    main_share = [
        np.bincount(a.topic[a.creator == k]).max() / (a.creator == k).sum()
        for k in np.unique(a.creator)[:20]
    ]
    assert np.mean(main_share) > 0.9


def test_from_table_normalises_and_defaults() -> None:
    emb = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    c = Catalog.from_table({"topic": [0, 1, 1], "popularity": [1, 1, 2]}, embeddings=emb)
    np.testing.assert_allclose(c.embeddings[0], [0.6, 0.8], atol=1e-6)
    np.testing.assert_allclose(c.popularity, [0.25, 0.25, 0.5])
    assert c.n_topics == 2 and list(c.title) == ["item 0", "item 1", "item 2"]


def test_from_dataframe_with_embedding_column() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "topic": [0, 0],
            "embedding": [[1.0, 0.0], [0.0, 1.0]],
            "title": ["a", "b"],
            "length": [30.0, 60.0],
        }
    )
    c = Catalog.from_table(df)
    assert c.median_length == 45.0 and list(c.title) == ["a", "b"]
