#!/usr/bin/env python3
"""The hostile-answer table: every probe x every hostile answer, classification and peak RSS.

    .venv/bin/python bench/hostile_answers.py [--probes x,mastodon] [--answers gzip_bomb]
                                              [--timeout 5s] [--json]

For each probe of monitor.probes.PROBES, its fake (monitor.fakes.platform_fakes) serves one
present account on loopback; for each hostile answer of monitor.fakes.HOSTILE_ANSWERS, at
full size (a 1 GiB gzip bomb, 1 MB on the wire; a 200 000-deep JSON array; ...), a fresh
``account-monitor probe`` process checks that account with the default body cap (1 MiB)
and prints its classification; its peak RSS comes from os.wait4 in a small launcher (see
monitor.fakes.processes). The first column, "none", is the same probe with no fault: the
baseline RSS and proof that the set-up says present.

A pass is every hostile cell an ``error`` (exit 3): the script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.fakes import HOSTILE_ANSWERS, PlatformFake, platform_fakes  # noqa: E402
from monitor.fakes.processes import probe_process  # noqa: E402
from monitor.probes import PROBES  # noqa: E402

BASELINE = "none"


@dataclass(frozen=True, slots=True)
class Cell:
    probe: str
    answer: str
    verdict: str  # "present", "absent (reason)", "error (kind)", or what went wrong
    evidence: str
    exit_code: int
    peak_rss_bytes: int




def config_text(name: str, spec: PlatformFake, base_url: str, timeout: str) -> str:
    fields = {"probe": name, **spec.settings(base_url), "base_url": base_url}
    # JSON is YAML: no quoting rules to get wrong for URLs and tokens.
    return json.dumps({"defaults": {"timeout": timeout},
                       "platforms": {name: fields}, "accounts": []})


async def measure_probe(name: str, answers: list[str], timeout: str,
                        workdir: Path) -> list[Cell]:
    spec = platform_fakes()[name]
    fake = spec.make()
    target_id = fake.account_id(spec.handle)
    cells = []
    async with fake.running() as base_url:
        cfg = workdir / f"{name}.json"
        cfg.write_text(config_text(name, spec, base_url, timeout))
        for answer in [BASELINE, *answers]:
            fake.set_faults(**HOSTILE_ANSWERS.get(answer, {}))
            code, out, rss = await asyncio.to_thread(probe_process, cfg, name, spec.handle,
                                                     target_id)
            cells.append(_cell(name, answer, code, out, rss))
            print(f"  {name:9} {answer:14} {cells[-1].verdict:24} {rss / 2**20:6.1f} MB",
                  file=sys.stderr, flush=True)
    return cells


def _cell(name: str, answer: str, code: int, out: str, rss: int) -> Cell:
    lines = out.splitlines()
    head = lines[0] if lines else ""
    verdict = head.partition(": ")[2] if head.startswith(f"{name}/") else f"crash (exit {code})"
    evidence = next((line.strip().removeprefix("evidence: ") for line in lines
                     if line.strip().startswith("evidence: ")), "")
    return Cell(name, answer, verdict, evidence, code, rss)


def markdown(cells: list[Cell], answers: list[str]) -> str:
    """Rows: probes; columns: answers; each cell "error kind (or present), peak RSS"."""
    columns = [BASELINE, *answers]
    by_key = {(c.probe, c.answer): c for c in cells}
    probes = sorted({c.probe for c in cells})
    lines = ["| probe | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for probe in probes:
        row = [f"{_short(by_key[probe, a].verdict)}, "
               f"{by_key[probe, a].peak_rss_bytes / 2**20:.0f} MB" for a in columns]
        lines.append(f"| {probe} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _short(verdict: str) -> str:
    """``error (parse)`` -> ``parse``; ``present`` and ``absent (...)`` as they are."""
    if verdict.startswith("error ("):
        return verdict.removeprefix("error (").removesuffix(")")
    return verdict


def failures(cells: list[Cell]) -> list[Cell]:
    """Hostile cells that are not an error, and baselines that are not present."""
    return [c for c in cells
            if (c.answer == BASELINE) != c.verdict.startswith("present")
            or (c.answer != BASELINE and c.exit_code != 3)]


async def main_async(args: argparse.Namespace) -> int:
    probes = args.probes.split(",") if args.probes else sorted(PROBES)
    answers = args.answers.split(",") if args.answers else list(HOSTILE_ANSWERS)
    unknown = (set(probes) - set(PROBES)) | (set(answers) - set(HOSTILE_ANSWERS))
    if unknown:
        print(f"unknown probe or answer: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in probes:
            cells += await measure_probe(name, answers, args.timeout, Path(tmp))
    if args.json:
        print(json.dumps([asdict(c) for c in cells], indent=2))
    else:
        print(markdown(cells, answers))
        worst = max((c for c in cells if c.answer != BASELINE), key=lambda c: c.peak_rss_bytes)
        print(f"\nworst peak RSS: {worst.peak_rss_bytes / 2**20:.0f} MB "
              f"({worst.probe}, {worst.answer})")
    bad = failures(cells)
    for cell in bad:
        print(f"FAIL {cell.probe} {cell.answer}: {cell.verdict} ({cell.evidence})",
              file=sys.stderr)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", help="comma-separated probe names (default: all)")
    parser.add_argument("--answers", help="comma-separated hostile answers (default: all)")
    parser.add_argument("--timeout", default="5s", help="the probes' timeout (slowloris ends "
                                                        "there)")
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
