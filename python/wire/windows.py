"""Window kinds for :meth:`wire.Pipeline.window`, over event time (see
:meth:`wire.Pipeline.event_time`); durations such as ``"500ms"``, ``"30s"``, ``"1m"``.

    >>> tumbling("1m"), sliding("10m", "1m"), session("30s")
    ({'size': '1m'}, {'size': '10m', 'slide': '1m'}, {'gap': '30s'})
"""

from __future__ import annotations

from typing import Dict

__all__ = ["tumbling", "sliding", "session"]


def tumbling(size: str) -> Dict[str, str]:
    """Back-to-back windows of ``size``: each record is in one."""
    return {"size": size}


def sliding(size: str, slide: str) -> Dict[str, str]:
    """Windows of ``size`` starting every ``slide`` (which divides ``size``): each record is
    in ``size / slide`` of them."""
    return {"size": size, "slide": slide}


def session(gap: str) -> Dict[str, str]:
    """A key's records less than ``gap`` apart form one window; a record bridging two
    merges them."""
    return {"gap": gap}
