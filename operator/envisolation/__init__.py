"""envisolation: keeps a cluster's environments network-isolated."""

from __future__ import annotations

__version__ = "0.1.0"
