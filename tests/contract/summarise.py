#!/usr/bin/env python3
"""Summarise a schemathesis 4.x run from its NDJSON event stream (and JSON run report).

    summarise.py --ndjson events.ndjson [--json report.json] [--st-exit-code N]

Prints, per API operation, the test cases generated in each phase, the failing cases and
the distinct failures; then failures by check; then the totals. Exits 1 if anything
failed (a check failure, an error, schemathesis' own non-zero exit, or no test case at
all), else 0. Stdlib only.

Where the numbers come from (schemathesis 4.32 event stream):
  * every `ScenarioFinished` event carries a `recorder` with `cases` (id -> case),
    `checks` (id -> [{name, status, failure_info?}]) and the operation `label`;
  * cases of the examples/coverage/fuzzing phases belong to `recorder.label` (coverage's
    unsupported-method probes, e.g. TRACE /widgets/{id}, count for the operation probed);
    stateful scenarios are labelled "Stateful tests", so their cases are attributed to
    their own `method path-template`;
  * `NonFatalError` events are errors (network failures, timeouts, unsatisfiable schemas).
The sum of cases equals the "N generated" schemathesis prints, which the JSON report holds
as test_cases.generated; the summary cross-checks the two when --json is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict

PHASES = ("examples", "coverage", "fuzzing", "stateful")


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ndjson", required=True, help="schemathesis --report ndjson output")
    ap.add_argument("--json", help="schemathesis --report json output (totals, cross-check)")
    ap.add_argument("--st-exit-code", type=int, default=None, help="schemathesis' own exit code")
    ap.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="the run's --max-examples: warn about operations whose fuzzing phase generated fewer cases",
    )
    args = ap.parse_args()

    cases: dict[str, Counter] = defaultdict(Counter)  # op -> phase -> cases
    ok_2xx: Counter = Counter()  # op -> cases answered 2xx
    failing_cases: dict[str, set] = defaultdict(set)  # op -> case ids with a failed check
    unique: dict[str, set] = defaultdict(set)  # op -> {(check, title, message)}
    by_check_responses: Counter = Counter()  # check -> failed check results (incl. shrinking repeats)
    by_check_unique: dict[str, set] = defaultdict(set)  # check -> {(op, title, message)}
    errors: list[str] = []
    seen_case_ids: set[str] = set()
    examples_of_failures: dict[tuple, str] = {}
    engine_finished = False
    fatal = None

    try:
        stream = open(args.ndjson, encoding="utf-8")
    except OSError as exc:
        print(f"summarise: cannot read {args.ndjson}: {exc}", file=sys.stderr)
        return 1
    with stream:
        for lineno, line in enumerate(stream, 1):
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                print(f"summarise: {args.ndjson}:{lineno}: not JSON, skipped", file=sys.stderr)
                continue
            (kind, data), = event.items()
            if kind == "EngineFinished":
                engine_finished = True
            elif kind == "FatalError":
                fatal = data
            elif kind == "NonFatalError":
                value = data.get("value")
                if isinstance(value, dict):
                    value = value.get("message") or value.get("type") or json.dumps(value)[:200]
                errors.append(f"{data.get('label', '?')} [{data.get('phase')}]: {first_line(str(value))[:200]}")
            elif kind == "ScenarioFinished":
                phase = data.get("phase", "?")
                recorder = data.get("recorder") or {}
                label = recorder.get("label", "?")
                rcases = recorder.get("cases") or {}

                def op_of(case_id: str) -> str:
                    if phase != "stateful":
                        return label
                    value = (rcases.get(case_id) or {}).get("value") or {}
                    return f"{value.get('method', '?')} {value.get('path', '?')}"

                for case_id in rcases:
                    if case_id in seen_case_ids:
                        continue
                    seen_case_ids.add(case_id)
                    cases[op_of(case_id)][phase] += 1
                    response = ((recorder.get("interactions") or {}).get(case_id) or {}).get("response") or {}
                    if 200 <= (response.get("status_code") or 0) < 300:
                        ok_2xx[op_of(case_id)] += 1
                for case_id, results in (recorder.get("checks") or {}).items():
                    for result in results:
                        if result.get("status") != "failure":
                            continue
                        op = op_of(case_id)
                        failure = (result.get("failure_info") or {}).get("failure") or {}
                        name = result.get("name", "?")
                        title = failure.get("title") or ""
                        message = failure.get("message") or ""
                        key = (name, title, message)
                        failing_cases[op].add(case_id)
                        unique[op].add(key)
                        by_check_responses[name] += 1
                        by_check_unique[name].add((op, title, message))
                        examples_of_failures.setdefault((op,) + key, f"{phase}, case {case_id}")

    report = None
    if args.json:
        try:
            with open(args.json, encoding="utf-8") as fh:
                report = json.load(fh)
        except (OSError, ValueError) as exc:
            errors.append(f"JSON report unreadable: {exc}")

    # ---- per-operation table -----------------------------------------------------------------
    ops = sorted(set(cases) | set(failing_cases))
    phases = [p for p in PHASES if any(cases[o][p] for o in ops)]
    headers = ["operation", *phases, "cases", "2xx", "failing", "failures"]
    rows = []
    for op in ops:
        total = sum(cases[op].values())
        rows.append(
            [
                op,
                *(str(cases[op][p]) for p in phases),
                str(total),
                str(ok_2xx[op]),
                str(len(failing_cases[op])),
                str(len(unique[op])),
            ]
        )
    tot_cases = sum(sum(c.values()) for c in cases.values())
    tot_failing = sum(len(v) for v in failing_cases.values())
    tot_unique = sum(len(v) for v in unique.values())
    rows.append(
        [
            "TOTAL",
            *(str(sum(cases[o][p] for o in ops)) for p in phases),
            str(tot_cases),
            str(sum(ok_2xx.values())),
            str(tot_failing),
            str(tot_unique),
        ]
    )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    print()
    print("Contract run summary (cases = test cases generated, by phase and in all; 2xx = cases")
    print("answered 2xx; failing = cases with a failed check; failures = distinct failures)")
    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows[:-1]:
        print(fmt(row))
    print("  ".join("-" * w for w in widths))
    print(fmt(rows[-1]))

    if by_check_unique:
        print()
        print("Failures by check (distinct / failed responses incl. shrinking re-runs):")
        for name in sorted(by_check_unique):
            print(f"  {name}: {len(by_check_unique[name])} distinct / {by_check_responses[name]} responses")
            for op, title, message in sorted(by_check_unique[name]):
                where = examples_of_failures.get((op, name, title, message), "")
                print(f"    - {op}: {first_line(title) or first_line(message)} -- {first_line(message)[:160]} ({where})")

    if args.max_examples and "fuzzing" in phases:
        short = [(op, cases[op]["fuzzing"]) for op in ops if cases[op]["fuzzing"] < args.max_examples]
        if short:
            print()
            print(f"Warning: fuzzing generated fewer than {args.max_examples} cases for:")
            for op, n in short:
                print(f"  - {op}: {n}")
            print("  (expected for operations with few possible inputs, or after a failure without")
            print("  --continue-on-failure; otherwise a cut-short Hypothesis run, seen with --workers > 1)")

    if errors:
        print()
        print(f"Errors ({len(errors)}):")
        for e in errors[:50]:
            print(f"  - {e}")
    if fatal is not None:
        print()
        print(f"Fatal error: {json.dumps(fatal)[:500]}")

    print()
    operations_line = f"operations tested: {len(ops)}"
    if report is not None:
        o = report.get("operations") or {}
        tc = report.get("test_cases") or {}
        operations_line = (
            f"operations: {o.get('tested')} tested / {o.get('selected')} selected / {o.get('total')} total"
        )
        if tc.get("generated") is not None and tc.get("generated") != tot_cases:
            print(f"note: schemathesis counted {tc.get('generated')} generated cases, the event stream {tot_cases}")
        print(
            f"schemathesis: {tc.get('generated')} generated, {tc.get('with_failures')} with failures, "
            f"{tc.get('unique_failures')} unique failures, {tc.get('errored')} errored, "
            f"running time {report.get('running_time') or 0:.1f}s, stop reason {report.get('stop_reason')}, "
            f"exit code {report.get('exit_code')}, seed {report.get('seed')}"
        )
    print(operations_line)

    problems = []
    if tot_unique:
        problems.append(f"{tot_unique} distinct failures")
    if errors:
        problems.append(f"{len(errors)} errors")
    if fatal is not None:
        problems.append("a fatal error")
    if not engine_finished:
        problems.append("the run did not finish")
    if tot_cases == 0:
        problems.append("no test case ran")
    if report is not None and report.get("failures"):
        if not tot_unique:
            problems.append(f"{len(report['failures'])} failure groups in the JSON report")
    if args.st_exit_code not in (None, 0):
        problems.append(f"schemathesis exited {args.st_exit_code}")
    passed = len(ops) - sum(1 for op in ops if unique[op])
    print("CONTRACT RUN FAILED: " + "; ".join(problems) if problems else "CONTRACT RUN PASSED")
    # Closing line in the plain "N passed, N failed" form, counted per operation.
    print(f"contract: {passed} passed, {len(ops) - passed} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
