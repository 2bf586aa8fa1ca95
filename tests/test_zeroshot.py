"""Zero-shot label sets: prompt ensembling, softmax scores, caching and refusals.

The embedder is a fake with known vectors, so label prototypes and scores are computed by
hand here (plain Python math) and compared with the classifier's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from imagebind_ros.zeroshot import ZeroShotClassifier, check_labels, read_labels

D = 4
BASIS = {"a {}.": np.array([1.0, 0, 0, 0]), "the {}": np.array([0, 1.0, 0, 0])}
LABEL_DIR = {"dog": np.array([0, 0, 1.0, 0]), "car": np.array([0, 0, 0, 1.0]),
             "bird": np.array([0, 0, 1.0, 1.0])}


class FakeEmbedder:
    """Prompt "a dog." -> normalise(template vector + label vector); counts calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        table = {t.format(lab): BASIS[t] + LABEL_DIR[lab] for t in BASIS for lab in LABEL_DIR}
        return np.array([table[x] / np.linalg.norm(table[x]) for x in texts], np.float32)


def prototype(label: str, templates: list[str]) -> list[float]:
    """Mean of the normalised prompt vectors, normalised: by hand."""
    vecs = []
    for t in templates:
        v = [b + c for b, c in zip(BASIS[t], LABEL_DIR[label])]
        n = math.sqrt(sum(x * x for x in v))
        vecs.append([x / n for x in v])
    mean = [sum(col) / len(vecs) for col in zip(*vecs)]
    n = math.sqrt(sum(x * x for x in mean))
    return [x / n for x in mean]


def test_scores_are_the_softmax_of_scaled_cosines() -> None:
    emb = FakeEmbedder()
    clf = ZeroShotClassifier(emb, logit_scale=10.0)
    templates = ["a {}.", "the {}"]
    assert clf.set_labels(["dog", "car", "bird"], templates)
    x = np.array([0.2, 0.1, 0.9, 0.3])
    x = x / np.linalg.norm(x)
    logits = [10.0 * sum(a * b for a, b in zip(prototype(lab, templates), x))
              for lab in ("dog", "car", "bird")]
    z = sum(math.exp(v) for v in logits)
    want = [math.exp(v) / z for v in logits]
    np.testing.assert_allclose(clf.scores(x), want, rtol=1e-5)
    top = clf.top_k(x, 2)
    order = sorted(range(3), key=lambda i: -want[i])[:2]
    assert [lab for lab, _ in top] == [("dog", "car", "bird")[i] for i in order]
    assert all(0.0 <= s <= 1.0 for _, s in top) and top[0][1] >= top[1][1]
    assert len(clf.top_k(x, 10)) == 3 and clf.top_k(x, 0) == []


def test_text_is_embedded_once_per_change() -> None:
    emb = FakeEmbedder()
    clf = ZeroShotClassifier(emb)
    assert clf.set_labels(["dog", "car"], ["a {}."])
    assert len(emb.calls) == 1 and emb.calls[0] == ["a dog.", "a car."]
    assert clf.set_labels(["dog", "car"]) is False  # same set, same templates
    assert clf.set_labels(["dog", "car"], ["a {}."]) is False
    assert len(emb.calls) == 1
    assert clf.set_labels(["dog", "car"], ["a {}.", "the {}"])  # templates changed
    assert clf.set_labels(["car", "dog"])  # order is part of the set
    assert len(emb.calls) == 3 and clf.text_encodes == 3
    for _ in range(5):
        clf.top_k(np.array([0, 0, 1.0, 0]), 1)
    assert len(emb.calls) == 3  # scoring never embeds text


@pytest.mark.parametrize("labels,templates,match", [
    ([], ["a {}."], "empty"), (["dog", ""], ["a {}."], "non-empty"),
    (["dog", "dog"], ["a {}."], "duplicate"), (["dog"], [], "template list is empty"),
    (["dog"], ["no placeholder"], "exactly one"), (["dog"], ["{} {}"], "exactly one")])
def test_bad_label_sets_are_refused_and_the_old_set_kept(labels: list, templates: list,
                                                         match: str) -> None:
    emb = FakeEmbedder()
    clf = ZeroShotClassifier(emb)
    clf.set_labels(["dog", "car"], ["a {}."])
    before = clf.scores(np.array([0, 0, 1.0, 0]))
    with pytest.raises(ValueError, match=match):
        clf.set_labels(labels, templates)
    assert clf.labels == ("dog", "car") and len(emb.calls) == 1
    np.testing.assert_array_equal(clf.scores(np.array([0, 0, 1.0, 0])), before)
    with pytest.raises(ValueError, match=match):
        check_labels(labels, templates)


def test_no_labels_yet() -> None:
    clf = ZeroShotClassifier(FakeEmbedder())
    assert not clf.ready
    with pytest.raises(ValueError, match="no labels"):
        clf.top_k(np.ones(D), 3)
    with pytest.raises(ValueError, match="positive"):
        ZeroShotClassifier(FakeEmbedder(), logit_scale=0)


def test_read_labels_skips_comments_and_blanks(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    f.write_text("# synthetic classes\ndog\n\n  car  \n# bird\nkettle\n", encoding="utf-8")
    assert read_labels(f) == ["dog", "car", "kettle"]
