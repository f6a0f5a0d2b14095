"""account-monitor: pages on-call when a protected account vanishes."""

__version__ = "0.1.0"
