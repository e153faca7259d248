"""Pure computation behind the institutional and frequency bots: numbers in, numbers out.

No events and no bot state here, so each module is tested with known answers directly:

=========================  =====  =============================================================
module                     bot    what
=========================  =====  =============================================================
:mod:`.arbitrage`          ARB    net edge after both taker fees, size by depth and balances
:mod:`.pairs`              PAR    Engle-Granger hedge ratio and gate, rolling spread z-score
:mod:`.ou`                 STA    Ornstein-Uhlenbeck fit by AR(1) regression, ADF gate
:mod:`.avellaneda`         MMK    Avellaneda-Stoikov reservation price and spread, mid volatility
:mod:`.johansen`           MRB    Johansen rank and weights of a basket, basket value
:mod:`.rebalance`          TRF    drift bands and greedy surplus -> deficit transfers
:mod:`.microstructure`     HFT    order-book imbalance, micro-price
:mod:`.breakout`           MFT    Donchian channel, Wilder ATR, ATR-sized units
:mod:`.crossover`          LFT    incremental SMA crossover, trailing stop
:mod:`.bands`              PAR,   entry / exit / stop thresholds on a z-score, with a stop lockout
                           STA,
                           MRB
=========================  =====  =============================================================

Statistics tests are statsmodels', reached through :mod:`._stats` (never hand-written).
"""
