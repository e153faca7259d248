"""The dashboard the host serves: live feed (SSE), REST, controls, metrics, health, AsyncAPI.

``docs/ui.md`` is the guide. Modules, one job each:

* ``feed.py`` the host observer keeping the last events, numbered (SSE ids), in a ``ring.py``;
* ``book.py`` what the page shows, derived from the events (positions, orders, PnL, alerts...);
* ``sse.py`` the browser streams; ``rates.py`` per-second rates; ``series.py`` bounded chart series;
* ``graph.py`` the wiring graph with the check's findings; ``asyncapi.py`` the AsyncAPI document;
* ``metrics.py`` the Prometheus collector; ``dashboard.py`` ties them to one host;
* ``web.py`` the FastAPI app; ``server.py`` uvicorn in the host's loop; ``static/`` the page.
"""

from __future__ import annotations

from .dashboard import Dashboard
from .server import DashboardServer, UiError

__all__ = ["Dashboard", "DashboardServer", "UiError"]
