"""monitor.probecounts: the per-answer series, counted in plain numbers, read exactly as
prometheus-client's own Counter and Histogram would expose the same answers."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from monitor.metrics import PROBE_BUCKETS
from monitor.model import AbsentReason, ErrorKind, Observation, Result
from monitor.probecounts import ProbeCounts


def native(answers: list[tuple[str, Observation, bool]],
           errors: list[tuple[str, ErrorKind]]) -> bytes:
    """The same answers through prometheus-client's classes: the reference."""
    r = CollectorRegistry()
    probes = Counter("accmon_probes", "Probe answers by classification",
                     ["platform", "result"], registry=r)
    kinds = Counter("accmon_probe_errors", "Probe errors by kind", ["platform", "kind"],
                    registry=r)
    latency = Histogram("accmon_probe_duration_seconds", "Time from request to classified "
                        "answer", ["platform"], buckets=PROBE_BUCKETS, registry=r)
    for platform, obs, timed in answers:
        probes.labels(platform, obs.result.value).inc()
        if timed:
            latency.labels(platform).observe(obs.latency)
        if obs.result is Result.ERROR and obs.error is not None:
            kinds.labels(platform, obs.error.value).inc()
    for platform, kind in errors:
        kinds.labels(platform, kind.value).inc()
    return generate_latest(r)


def ours(answers: list[tuple[str, Observation, bool]],
         errors: list[tuple[str, ErrorKind]]) -> bytes:
    r = CollectorRegistry()
    counts = ProbeCounts(PROBE_BUCKETS)
    r.register(counts)
    for platform, obs, timed in answers:
        counts.observed(platform, obs, timed=timed)
    for platform, kind in errors:
        counts.error(platform, kind)
    return generate_latest(r)


def without_created(text: bytes) -> list[str]:
    return sorted(line for line in text.decode().splitlines() if "_created" not in line)


def test_same_exposition_as_prometheus_client() -> None:
    rnd = random.Random(13)
    answers: list[tuple[str, Observation, bool]] = []
    for _ in range(3000):
        platform = rnd.choice(["x", "bluesky", 'we"ird\\p'])
        latency = rnd.choice([0.0, 0.05, 0.1, 30.0, 31.0, rnd.random() * 40])  # bounds too
        obs = rnd.choice([
            Observation.present(1.0, latency=latency),
            Observation.absent(1.0, AbsentReason.SUSPENDED, latency=latency),
            Observation.failed(1.0, rnd.choice(list(ErrorKind)), latency=latency),
        ])
        answers.append((platform, obs, rnd.random() < 0.9))  # some pushed, not timed
    errors = [("x", ErrorKind.INTERNAL), ("github", ErrorKind.INTERNAL)]
    assert without_created(ours(answers, errors)) == without_created(native(answers, errors))


def test_a_latency_on_a_bound_counts_in_that_bucket() -> None:
    text = ours([("x", Observation.present(1.0, latency=0.25), True)], []).decode()
    assert 'accmon_probe_duration_seconds_bucket{le="0.1",platform="x"} 0.0' in text
    assert 'accmon_probe_duration_seconds_bucket{le="0.25",platform="x"} 1.0' in text
    assert 'accmon_probe_duration_seconds_bucket{le="+Inf",platform="x"} 1.0' in text
    assert 'accmon_probe_duration_seconds_sum{platform="x"} 0.25' in text


def test_nothing_counted_yet_exposes_the_families_without_samples() -> None:
    text = ours([], []).decode()
    for name in ("accmon_probes_total", "accmon_probe_errors_total",
                 "accmon_probe_duration_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    assert "platform=" not in text
