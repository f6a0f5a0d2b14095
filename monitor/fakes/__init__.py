"""Simulated platforms (aiohttp servers) for the demo, the tests and the benchmarks.

- :mod:`monitor.fakes.mastodon` -- ``FakeMastodon``, the Mastodon account API
- :mod:`monitor.fakes.site` -- ``FakeSite``, a scriptable website for the ``http`` probe
- :mod:`monitor.fakes.faults` -- ``Faults`` and the server shell both share

Submodules are not imported here, so ``python -m monitor.fakes.<name>`` runs cleanly.
"""
