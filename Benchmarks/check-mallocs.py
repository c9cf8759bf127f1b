#!/usr/bin/env python3
"""The malloc gate of the micro-benchmarks: runs them (`swift package benchmark`, JMH export),
prints wall-clock and mallocs per operation for every benchmark, and exits 1 only when a
benchmark allocates more per operation than its limit in malloc-limits.json (or a limited
benchmark did not run). Wall-clock is reported, never gated: this machine is shared and noisy.

    python3 Benchmarks/check-mallocs.py                       # run everything, then check
    python3 Benchmarks/check-mallocs.py --filter 'Publish.*'  # a subset: regexes match whole names
    python3 Benchmarks/check-mallocs.py --results FILE.json   # check an existing JMH export

Why not the tool's own thresholds: through `swift package benchmark` a threshold regression and
an improvement both exit 1, and its text output rounds counts per iteration. The JMH export
carries the raw count per sample (one sample = `scale` operations, see malloc-limits.json), so
"0 per message" here means not one allocation in any measured sample.
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(".build", "bench-results")
MALLOC = "Malloc (total)"
WALL = "Time (wall clock)"


def run_benchmarks(filters):
    """Runs the benchmark package with a JMH export; returns the export's path."""
    # SwiftPM reuses its build manifest while this package's own manifest is unchanged, and then
    # does not notice source files added to the broker (`../`): the build fails, or links stale
    # objects. Dropping the manifest makes it rescan the sources (a second or two).
    for manifest in ("release.yaml", "debug.yaml"):
        stale = os.path.join(HERE, ".build", manifest)
        if os.path.exists(stale):
            os.remove(stale)
    os.makedirs(os.path.join(HERE, RESULTS_DIR), exist_ok=True)
    path = os.path.join(HERE, RESULTS_DIR, "Current_run.jmh.json")
    if os.path.exists(path):
        os.remove(path)
    command = [os.environ.get("SWIFT", "swift"), "package", "--allow-writing-to-package-directory", "benchmark", "--no-progress",
               "--format", "jmh", "--path", RESULTS_DIR]
    for pattern in filters:
        command += ["--filter", pattern]
    print("+", " ".join(command), flush=True)
    status = subprocess.run(command, cwd=HERE).returncode
    if status != 0 or not os.path.exists(path):
        sys.exit(f"benchmark run failed (exit {status})")
    return path


def load_results(path):
    """{(target, benchmark name): {metric: JMH metric}} from a JMH export."""
    results = {}
    for element in json.load(open(path)):
        # "package.benchmark.<Target>.<name with spaces as underscores>"
        _, _, target, name = element["benchmark"].split(".", 3)
        metrics = dict(element.get("secondaryMetrics") or {})
        results[(target, name)] = metrics
    return results


def fractional_excess(metrics, limit, scale):
    """True when the worst sample is over the limit by less than one allocation per operation."""
    if not metrics or MALLOC not in metrics:
        return False
    worst = metrics[MALLOC]["scorePercentiles"]["100.0"]
    return limit * scale < worst < (limit + 1) * scale


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", default=os.path.join(HERE, "malloc-limits.json"))
    parser.add_argument("--results", help="check this JMH export instead of running the benchmarks")
    parser.add_argument("--filter", action="append", default=[], help="regex matching whole benchmark names (repeatable)")
    args = parser.parse_args()

    config = json.load(open(args.limits))
    path = args.results or run_benchmarks(args.filter)
    results = load_results(path)
    if not args.results:
        # A worst sample with fewer allocations than operations cannot be an allocation per
        # operation: it is either an amortised one (which recurs) or a stray from another thread
        # of the process (jemalloc's counts are process-wide). Those benchmarks run once more,
        # alone, and their second run is what is checked: a recurring allocation still fails.
        strays = [(target, name) for target, limits in config["limits"].items() for name, limit in limits.items()
                  if fractional_excess(results.get((target, name.replace(" ", "_"))), limit, config["scale"][target])]
        if strays:
            print("re-running (an allocation in one sample, fewer than one per operation):",
                  ", ".join(f"{t}: {n}" for t, n in strays), flush=True)
            again = load_results(run_benchmarks(["^" + re.sub(r"([.()\[\]{}*+?^$|\\])", r"\\\1", n) + "$" for _, n in strays]))
            for target, name in strays:
                key = (target, name.replace(" ", "_"))
                if key in again:
                    results[key] = again[key]

    failures = []
    rows = []
    checked = set()
    for target, limits in config["limits"].items():
        scale = config["scale"][target]
        for name, limit in limits.items():
            key = (target, name.replace(" ", "_"))
            checked.add(key)
            metrics = results.get(key)
            if metrics is None:
                if not args.filter:
                    failures.append(f"{target}: '{name}' did not run")
                continue
            if MALLOC not in metrics:
                failures.append(f"{target}: '{name}' reports no {MALLOC}")
                continue
            worst = metrics[MALLOC]["scorePercentiles"]["100.0"]  # raw count, worst sample
            per_op = worst / scale
            ok = worst <= limit * scale
            rows.append((target, name, metrics, scale, per_op, limit, ok))
            if not ok:
                failures.append(f"{target}: '{name}' allocates {per_op:g} per operation, limit {limit}")
    for key, metrics in sorted(results.items()):
        if key not in checked:
            target, name = key
            scale = config["scale"].get(target, 1)
            worst = metrics.get(MALLOC, {}).get("scorePercentiles", {}).get("100.0", float("nan"))
            rows.append((target, name.replace("_", " "), metrics, scale, worst / scale, None, True))

    print()
    print(f"{'benchmark':<66} {'ns/op p50':>10} {'mallocs/op':>11} {'limit':>6}")
    for target, name, metrics, scale, per_op, limit, ok in rows:
        wall = metrics.get(WALL, {}).get("scorePercentiles", {}).get("50.0")
        # JMH wall clock is µs per sample; a sample is `scale` operations.
        ns = f"{wall * 1000 / scale:.1f}" if wall is not None else "-"
        shown = "-" if limit is None else str(limit)
        flag = "" if ok else "  <-- over the limit"
        print(f"{target + ': ' + name:<66.66} {ns:>10} {per_op:>11.3g} {shown:>6}{flag}")
    print()
    if failures:
        print("malloc gate FAILED:")
        for failure in failures:
            print("  " + failure)
        sys.exit(1)
    print(f"malloc gate passed ({len(rows)} benchmarks, {sum(1 for r in rows if r[5] is not None)} with a limit)")


if __name__ == "__main__":
    main()
