"""Choose ORA's matcher by measurement: ``python -m citarion_bots.oracle.measure``.

For each candidate (TF-IDF nearest neighbour, RapidFuzz), on the platform's roster of bots:

1. **calibrate** the refusal threshold without touching the held-out set: leave each training example
   out in turn (fit on the others, route it: right intent and accepted is a hit) and route the dev
   out-of-scope questions below (refused is a hit); the threshold with the best worse-of-the-two rate
   (then the best sum) wins;
2. **evaluate** on ``heldout.toml``: the share of paraphrases routed to their intent (accepted), and
   the share of out-of-scope questions refused.

scikit-learn is an optional dependency (``pip install -e 'plugins/citarion-bots[measure]'``); without
it only RapidFuzz (ORA's matcher) is measured. Prints one table; ``--json`` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from citarion_host.registry import load_registry

from .intents import INTENTS, extract
from .matchers import FuzzyMatcher, Matcher, TfidfMatcher
from .router import Router

__all__ = ["DEV_OUT_OF_SCOPE", "HELDOUT", "bot_names", "calibrate", "evaluate", "main", "measure"]

HELDOUT = Path(__file__).with_name("heldout.toml")

#: Calibration only (the held-out out-of-scope questions are others).
DEV_OUT_OF_SCOPE = (
    "what is the weather like",
    "open a long position on BTCUSDT",
    "is it a good time to invest",
    "tell me about yourself as a person",
    "how old are you",
    "play some music",
    "what is the exchange rate of euro to dollar",
    "give me a recipe",
    "close every position now",
    "when will the market crash",
    "who invented bitcoin",
    "what should I trade today",
    "set a stop loss at 40000",
    "how do I make a million dollars",
    "what is the best crypto",
)


def bot_names(roster: dict[str, str]) -> dict[str, list[str]]:
    """Every lower-cased bot id, registry code and registry name -> the bot ids it means (the 19
    platform bots only: the host services are not bots to ask about)."""
    registry = load_registry()
    known = {info.code: info.name for info in registry}
    names: dict[str, list[str]] = {}
    for bot_id, code in roster.items():
        if code not in known:
            continue
        for alias in (bot_id, code, known[code]):
            ids = names.setdefault(alias.lower(), [])
            if bot_id not in ids:
                ids.append(bot_id)
    return names


def calibrate(factory: Callable[[], Matcher], names: dict[str, list[str]]) -> tuple[float, dict[str, float]]:
    """The threshold with the best worse-of-two dev rate: leave-one-out examples routed right, dev
    out-of-scope questions refused (the held-out set is not used)."""
    examples = [(example, intent.name) for intent in INTENTS for example in intent.examples]
    loo: list[tuple[bool, float]] = []  # (right intent before the threshold, score)
    for i, (example, label) in enumerate(examples):
        router = _router(factory, names, skip=i)
        route = router.route(example.replace("BOT", "orion").replace("TOPIC", "trading.order.filled")
                             .replace("ORDER", "orion-1").replace("SYMBOL", "BTCUSDT"))  # fmt: skip
        loo.append((route.intent is not None and route.intent.name == label, route.score))
    router = _router(factory, names)
    oos = [router.route(q) for q in DEV_OUT_OF_SCOPE]
    chosen, figures, key = 0.0, {"loo": 0.0, "oos": 0.0}, (-1.0, -1.0)
    for step in range(0, 96):
        threshold = step / 100
        hits = sum(1 for right, score in loo if right and score >= threshold) / len(loo)
        refused = sum(1 for r in oos if r.intent is None or r.score < threshold) / len(oos)
        if (min(hits, refused), hits + refused) > key:
            key, chosen, figures = (
                (min(hits, refused), hits + refused),
                threshold,
                {"loo": hits, "oos": refused},
            )
    return chosen, figures


def _router(factory: Callable[[], Matcher], names: dict[str, list[str]], skip: int | None = None) -> Router:
    """A router whose matcher is fitted on the examples (less example ``skip``), threshold 0."""
    matcher = factory()
    matcher.threshold = 0.0
    router = Router(names, matcher)
    if skip is not None:
        texts = [extract(e, names).text for intent in INTENTS for e in intent.examples]
        labels = [intent.name for intent in INTENTS for _ in intent.examples]
        matcher.fit(texts[:skip] + texts[skip + 1 :], labels[:skip] + labels[skip + 1 :])
    return router


def evaluate(router: Router, heldout: dict[str, Any]) -> dict[str, Any]:
    routed, total, misses = 0, 0, []
    started = time.perf_counter()
    for intent, questions in heldout["paraphrases"].items():
        for question in questions:
            total += 1
            route = router.route(question)
            pick = route.intent.name if route.intent else None
            if pick == intent:
                routed += 1
            else:
                misses.append(f"{question!r}: {pick} (want {intent}; {route.reason or route.score})")
    oos = heldout["out_of_scope"]["questions"]
    accepted = [q for q in oos if router.route(q).intent is not None]
    elapsed = time.perf_counter() - started
    return {
        "paraphrases": total,
        "routed": routed,
        "routed_share": round(routed / total, 4),
        "out_of_scope": len(oos),
        "refused": len(oos) - len(accepted),
        "refused_share": round((len(oos) - len(accepted)) / len(oos), 4),
        "us_per_question": round(elapsed * 1e6 / (total + len(oos)), 1),
        "misses": misses,
        "accepted_out_of_scope": accepted,
    }


def candidates() -> dict[str, Callable[[], Matcher]]:
    found: dict[str, Callable[[], Matcher]] = {"rapidfuzz": FuzzyMatcher}
    try:
        import sklearn  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        found["tfidf"] = TfidfMatcher
    return found


def measure(names_only: Sequence[str] = ()) -> dict[str, Any]:
    heldout = tomllib.loads(HELDOUT.read_text(encoding="utf-8"))
    names = bot_names(heldout["roster"])
    results: dict[str, Any] = {}
    for name, factory in candidates().items():
        if names_only and name not in names_only:
            continue
        threshold, dev = calibrate(factory, names)
        matcher = factory()
        matcher.threshold = threshold
        results[name] = {"threshold": threshold, "dev": dev, **evaluate(Router(names, matcher), heldout)}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m citarion_bots.oracle.measure", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    results = measure()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    head = ("matcher", "threshold", "dev loo", "dev oos", "routed", "refused", "us/q")
    print(f"{head[0]:10} {head[1]:>9} {head[2]:>8} {head[3]:>8} {head[4]:>12} {head[5]:>10} {head[6]:>7}")
    for name, r in results.items():
        print(
            f"{name:10} {r['threshold']:>9.2f} {r['dev']['loo']:>8.1%} {r['dev']['oos']:>8.1%}"
            f" {r['routed']:>4}/{r['paraphrases']:<3} {r['routed_share']:>4.0%}"
            f" {r['refused']:>3}/{r['out_of_scope']:<3} {r['refused_share']:>4.0%} {r['us_per_question']:>7}"
        )
        for miss in r["misses"]:
            print(f"    miss: {miss}")
        for accepted in r["accepted_out_of_scope"]:
            print(f"    not refused: {accepted!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
