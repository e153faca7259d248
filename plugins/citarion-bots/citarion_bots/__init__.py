"""citarion-bots: the CITARION paper-trading platform as citarion-host plugins.

One module per bot family, each a pluggy plugin registered under the ``citarion.bots`` entry-point
group and implementing ``citarion_bot_types()``:

========================  =====  ==================================================================
module                    code   bot types
========================  =====  ==================================================================
:mod:`.lumi`              LUM    ``lumi-synthetic``, ``lumi-csv`` (market data feeds)
:mod:`.exchange`          EXC    ``paper-exchange`` (fills, books, positions)
:mod:`.grid`              GRD    ``grid``
:mod:`.dca`               DCA    ``dca``
:mod:`.bollinger`         BBB    ``bollinger``
:mod:`.range`             RNG    ``range``
:mod:`.pump`              PND    ``pump-dump``
:mod:`.forecast`          FCS    ``forecast``
:mod:`.logos`             LOG    ``logos`` (consensus, decisions, autonomous orders)
:mod:`.risk`              RSK    ``risk-guard`` (limits, alerts, blocks)
:mod:`.wolf`              WLF    ``wolf`` (alert delivery)
:mod:`.arbitrage`         ARB    ``arbitrage`` (cross-exchange, both legs or none)
:mod:`.pairs`             PAR    ``pairs`` (Engle-Granger pairs)
:mod:`.statarb`           STA    ``stat-arb`` (Ornstein-Uhlenbeck mean reversion)
:mod:`.marketmaker`       MMK    ``market-maker`` (Avellaneda-Stoikov quotes)
:mod:`.basket`            MRB    ``basket`` (Johansen basket mean reversion)
:mod:`.transfer`          TRF    ``transfer`` (per-exchange balance rebalancing)
:mod:`.hft`               HFT    ``hft-imbalance`` (order-book imbalance, time stop)
:mod:`.mft`               MFT    ``mft-breakout`` (Donchian/turtle breakouts)
:mod:`.lft`               LFT    ``lft-crossover`` (daily MA crossover, trailing stop)
========================  =====  ==================================================================

Pure computation lives apart from the bots so it can be tested directly: :mod:`.indicators`
(SMA, sigma, bands, Holt), :mod:`.books` (accounting), :mod:`.consensus` (LOGOS's arithmetic),
:mod:`.synthetic` (the generator) and :mod:`.csvfeed` (the CSV format). See ``docs/bots.md``.
The nine institutional and frequency bots share :mod:`.desk` (their orders, positions, balances);
their math is :mod:`.quant`, their market :mod:`.market` (``docs/market.md``,
``docs/bots-institutional.md``).
"""

__version__ = "0.1.0"
