"""The built-in web UI: an overview of every watched account at ``/``, a page per account,
a live update stream for them, and their stylesheet and script.

Rooms: :mod:`monitor.ui.viewer` (who sees what: full, public or a login prompt),
:mod:`monitor.ui.text` (how times, states and platform strings are written, pure),
:mod:`monitor.ui.views` (the view models, from the running monitor),
:mod:`monitor.ui.reporting` (the availability figures, from :mod:`monitor.reports`),
:mod:`monitor.ui.routes` (aiohttp handlers, security headers, the event stream).

Everything a platform hands us (handles, current handles, evidence, error text) and every
comment a person typed is rendered as text: Jinja autoescaping on every template, no
``|safe``, each such string in ``<bdi>`` so right-to-left overrides cannot reorder the text
around it, and no URL built from them except our own routes (path parts quoted) and profile
links from the config's templates (http and https only).
"""
