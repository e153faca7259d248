"""Matching a question (with its slots replaced) to one of ORA's fixed intents, offline.

Two matchers were compared on a held-out paraphrase set (``python -m citarion_bots.oracle.measure``;
figures in docs/oracle.md):

* :class:`TfidfMatcher` (scikit-learn): TF-IDF over word uni- and bigrams and character 3-5-grams of
  the example questions, English stop words left out of the words; a question's score for an intent is
  its best cosine similarity to one of the intent's examples (nearest neighbour);
* :class:`FuzzyMatcher` (RapidFuzz): the best ``token_set_ratio`` of the question against every
  example.

Both sit behind the same gate (:mod:`.router`: key words and slots) and refuse below a threshold
calibrated on the training examples (leave one out) and a dev set of out-of-scope questions, never on
the held-out set. RapidFuzz won: 63/64 held-out paraphrases routed right against 60/64, every held-out
out-of-scope question refused by both, better on the dev sets, and ~13x faster per question
(docs/oracle.md). It is ORA's matcher; scikit-learn is only needed to re-run the comparison (the
``measure`` extra).

Nothing is downloaded: both fit on the examples in :mod:`.intents` at start (a few milliseconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .intents import INTENTS, Intent

__all__ = ["FuzzyMatcher", "Match", "Matcher", "TfidfMatcher", "training_set"]


@dataclass(frozen=True, slots=True)
class Match:
    intent: str | None  # None: refused
    score: float
    ranked: tuple[tuple[str, float], ...]  # every intent by score, best first


class Matcher(Protocol):
    threshold: float

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Matcher: ...

    def scores(self, text: str) -> dict[str, float]: ...


def training_set(intents: Sequence[Intent] = INTENTS) -> tuple[list[str], list[str]]:
    texts = [example for intent in intents for example in intent.examples]
    labels = [intent.name for intent in intents for _ in intent.examples]
    return texts, labels


def best(matcher: Matcher, text: str) -> Match:
    """The matcher's pick for ``text``, or a refusal when its best score is under the threshold."""
    ranked = tuple(sorted(matcher.scores(text).items(), key=lambda item: (-item[1], item[0])))
    top, score = ranked[0]
    return Match(top if score >= matcher.threshold else None, round(score, 4), ranked)


class TfidfMatcher:
    """Nearest example by cosine similarity of TF-IDF vectors (words and character n-grams)."""

    #: calibrated by ``measure`` (leave-one-out examples + the dev out-of-scope questions)
    threshold: float = 0.37

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is not None:
            self.threshold = threshold
        self._labels: list[str] = []
        self._vectorizer: Any = None
        self._matrix: Any = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TfidfMatcher:
        from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from sklearn.pipeline import FeatureUnion  # type: ignore[import-untyped,import-not-found,unused-ignore]

        self._vectorizer = FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=(1, 2), stop_words="english", sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)),
        ])  # fmt: skip
        self._matrix = self._vectorizer.fit_transform(list(texts))
        self._labels = list(labels)
        return self

    def scores(self, text: str) -> dict[str, float]:
        from sklearn.preprocessing import normalize  # type: ignore[import-untyped,import-not-found,unused-ignore]

        vector = normalize(self._vectorizer.transform([text]))
        similarity = np.asarray((normalize(self._matrix) @ vector.T).todense()).ravel()
        out: dict[str, float] = {}
        for label, value in zip(self._labels, similarity, strict=True):
            out[label] = max(out.get(label, 0.0), float(value))
        return out


class FuzzyMatcher:
    """Best RapidFuzz ``token_set_ratio`` (0..1) against the examples of each intent."""

    #: calibrated by ``measure`` (leave-one-out examples + the dev out-of-scope questions)
    threshold: float = 0.58

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is not None:
            self.threshold = threshold
        self._examples: list[tuple[str, str]] = []

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> FuzzyMatcher:
        self._examples = [(t.lower(), label) for t, label in zip(texts, labels, strict=True)]
        return self

    def scores(self, text: str) -> dict[str, float]:
        from rapidfuzz import fuzz

        out: dict[str, float] = {}
        query = text.lower()
        for example, label in self._examples:
            out[label] = max(out.get(label, 0.0), fuzz.token_set_ratio(query, example) / 100)
        return out
