"""Seeded synthetic markets with planted structure, for the institutional and frequency bots.

* :mod:`.paths`: random walks, OU, cointegrated pair and basket, cross-exchange gap episodes;
* :mod:`.l2`: level-2 books around a mid path whose imbalance predicts the next move, and trades;
* :mod:`.candles`: OHLCV from steps, aggregation to longer intervals (1m -> 1h -> 1d);
* :mod:`.scenario`: all of it as one time-ordered stream of market events, with the ground truth.

Pure: numbers and payloads out, no bus. ``docs/market.md`` documents every parameter.
"""
