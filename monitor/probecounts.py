"""The per-answer metrics, counted in plain numbers and turned into series at scrape time.

``accmon_probes_total``, ``accmon_probe_errors_total`` and
``accmon_probe_duration_seconds`` change on every answer: a batch of 100 X accounts counts
100 of each. prometheus-client's ``Counter.inc`` takes a lock and ``Histogram.observe``
checks, locks and loops over its buckets: ~2 us an answer in all, 8 % of the X batch path's
CPU (py-spy, bench/throughput.py). Here an answer is a dict update and a bisect (~0.4 us),
and :meth:`ProbeCounts.collect` builds the same series, with the same names, help, labels
and bucket bounds, when Prometheus asks. Only the event loop's thread counts; a scrape
rendered in another thread reads numbers at most one answer old.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitor.model import ErrorKind, Observation, Result


class ProbeCounts(Collector):
    """Answers by platform and result, errors by platform and kind, latency by platform."""

    def __init__(self, buckets: Iterable[float]) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = tuple(bounds)
        self._le = [str(floatToGoString(b)) for b in self.bounds]  # type: ignore[no-untyped-call]
        self.answers: dict[tuple[str, Result], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        # platform -> [count per bucket (not cumulative)..., sum of latencies]
        self.latency: dict[str, list[float]] = {}

    def observed(self, platform: str, obs: Observation, *, timed: bool = True) -> None:
        """Count one answer; its latency too unless no request was made (a stream event)."""
        key = (platform, obs.result)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1
        if timed:
            cells = self.latency.get(platform)
            if cells is None:
                cells = self.latency[platform] = [0.0] * (len(self.bounds) + 1)
            latency = obs.latency
            # The first bound >= latency: Prometheus buckets are "less than or equal".
            cells[bisect.bisect_left(self.bounds, latency)] += 1
            cells[-1] += latency
        if obs.error is not None and obs.result is Result.ERROR:
            self.error(platform, obs.error)

    def answered(self, platform: str, result: Result) -> int:
        """How many answers of ``platform`` were classified ``result`` so far."""
        return self.answers.get((platform, result), 0)

    def error(self, platform: str, kind: ErrorKind | str, count: int = 1) -> None:
        """Count an error that is not (only) an answer, e.g. one of our own bugs."""
        key = (platform, str(kind))
        self.errors[key] = self.errors.get(key, 0) + count

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        yield from self._families(fill=True)

    def _families(self, *, fill: bool = False) -> Iterator[Metric]:
        answers = CounterMetricFamily("accmon_probes", "Probe answers by classification",
                                      labels=["platform", "result"])
        errors = CounterMetricFamily("accmon_probe_errors", "Probe errors by kind",
                                     labels=["platform", "kind"])
        latency = HistogramMetricFamily("accmon_probe_duration_seconds",
                                        "Time from request to classified answer",
                                        labels=["platform"])
        if fill:
            for (platform, result), n in list(self.answers.items()):
                answers.add_metric([platform, result.value], float(n))
            for (platform, kind), n in list(self.errors.items()):
                errors.add_metric([platform, kind], float(n))
            for platform, cells in list(self.latency.items()):
                cells = list(cells)
                running, buckets = 0.0, []
                for le, cell in zip(self._le, cells, strict=False):
                    running += cell
                    buckets.append((le, running))
                latency.add_metric([platform], buckets, sum_value=cells[-1])
        yield from (answers, errors, latency)
