"""``make bench``: every benchmark in one run, and one table of ratios against their targets.

Numbers, not a test: nothing fails. Timings are medians over several fresh processes or warm
requests, with their spread (min–max); ratios divide medians measured in the same run, against
the same local servers, so that the machine's load falls on both sides alike. The machine's
load average is printed beside them: on a busy shared machine, rerun before trusting a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench import bench_authorizer, bench_generation  # noqa: E402
from bench.shapes import deployed_assets  # noqa: E402
from infra.bundling import BuildTarget, build_lambda_assets  # noqa: E402

Row = tuple[str, str, str, str]  # what, measured, ratio, target


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], unit: str = "ms", digits: int = 0) -> str:
    return f"{med(values):.{digits}f} {unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def verdict(ratio: float, limit: float) -> str:
    return f"≤ {limit:g}×  {'met' if ratio <= limit else 'MISSED'}"


def generation_rows(result: dict) -> list[Row]:
    cold, warm, size = result["cold"], result["warm"], result["image_bytes"]
    rows: list[Row] = []
    ours = med(cold["run step"])
    rows.append(("cold: provider path — the job's run step as deployed (claim, call, keep the "
                 "base64 in S3, record)", spread(cold["run step"]), "", ""))  # fmt: skip
    rows += cold_marks_rows(cold["run step marks"], med(cold["openai"]))
    for name, label, limit in (("openai", "the openai SDK", 0.5), ("litellm", "LiteLLM", 0.125),
                               ("floor", "floor: httpx + json + base64", None)):  # fmt: skip
        ratio = ours / med(cold[name])
        rows.append((f"cold: {label}", spread(cold[name]), f"{ratio:.3f}× (run step)",
                     verdict(ratio, limit) if limit else ""))  # fmt: skip
    rows += snapstart_run_rows(cold)
    request = med(cold["request path"])
    rows.append(("cold: request path as deployed (POST, respond-async → 202: admit, record, "
                 "StartExecution)", spread(cold["request path"]), "", ""))  # fmt: skip
    ratio = request / med(cold["request floor"])
    rows.append(("cold: bare boto3, the same 3 AWS calls", spread(cold["request floor"]),
                 f"{ratio:.2f}× (request path)", ""))  # fmt: skip
    snapstart = cold["request path, SnapStart"]
    ratio = med(snapstart) / med(cold["request floor"])
    rows.append(("cold: request path as deployed with SnapStart (emulated: fork of the "
                 "snapshotted init → after_restore, 202)", spread(snapstart),
                 f"{ratio:.2f}× bare boto3", "+ Lambda's restore (not measured)"))  # fmt: skip

    floor = med(warm["floor"]["times"])
    rows.append(("warm: floor (httpx.Client + json + base64)",
                 spread(warm["floor"]["times"], digits=2), "", ""))  # fmt: skip
    call = warm["provider call (the run step's)"]
    ratio = med(call["paired"]["ratios"])  # the median of paired rounds' ratios
    rows.append(("warm: provider call, as the run step makes it (paired with the floor)",
                 spread(call["paired"]["times"], digits=2), f"{ratio:.2f}× floor",
                 verdict(ratio, 1.1)))  # fmt: skip
    for name in ("run step, data URL", "run step, stored (S3)",
                 "request path (HTTP, respond-async)"):  # fmt: skip
        item = warm[name]
        ratio = med(item["times"]) / floor
        rows.append((f"warm: {name} [{len(item['aws_calls'])} AWS calls]",
                     spread(item["times"], digits=2), f"{ratio:.2f}× floor", ""))  # fmt: skip
    rows.append(("warm: job floor (the floor + the same 11 AWS operations of the same shape, "
                 "bare boto3, on our own tables under a customer of its own)",
                 spread(warm["job floor"]["times"], digits=2), "", ""))  # fmt: skip
    for name, limit in (("direct, data URL", 1.1), ("HTTP, data URL", 1.3),
                        ("direct, stored (S3)", None), ("HTTP, stored (S3)", None)):  # fmt: skip
        item = warm[name]
        ratio = med(item["paired"]["ratios"])
        rows.append((f"warm: whole generation, {name} [{len(item['aws_calls'])} AWS calls]",
                     spread(item["paired"]["times"], digits=2), f"{ratio:.2f}× job floor",
                     verdict(ratio, limit) if limit else ""))  # fmt: skip

    rows += per_operation_rows(warm["per operation"])

    memory = [("run step, data URL", warm["run step, data URL"]["peak_bytes"]),
              ("run step, stored (S3)", warm["run step, stored (S3)"]["peak_bytes"])]  # fmt: skip
    for name in ("direct, data URL", "HTTP, data URL", "direct, stored (S3)", "HTTP, stored (S3)"):
        memory.append((f"generation handler, {name}", warm[name]["peak_bytes"]))
    for name, peak in memory:
        ratio = peak / size
        rows.append((f"peak memory per request: {name}", f"{peak / 1e6:.2f} MB",
                     f"{ratio:.2f}× image", verdict(ratio, 4)))  # fmt: skip
    for name in ("floor", "job floor"):
        peak = warm[name]["peak_bytes"]
        rows.append((f"peak memory per request: {name}", f"{peak / 1e6:.2f} MB",
                     f"{peak / size:.2f}× image", ""))  # fmt: skip
    return rows


def snapstart_margins(cold: dict) -> dict[str, float]:
    """What is left of each target for Lambda's restore, which a fork does not pay: the
    target's share of the contender's cold median minus the emulated SnapStart row's median."""
    ours = med(cold["run step, SnapStart"])
    return {"openai": 0.5 * med(cold["openai"]) - ours,
            "litellm": 0.125 * med(cold["litellm"]) - ours}  # fmt: skip


def snapstart_run_rows(cold: dict) -> list[Row]:
    snapstart = med(cold["run step, SnapStart"])
    openai, litellm = (snapstart / med(cold[name]) for name in ("openai", "litellm"))
    margins = snapstart_margins(cold)
    return [
        ("cold: run step as deployed with SnapStart (emulated: fork of the snapshotted init → "
         "after_restore, run)", spread(cold["run step, SnapStart"]),
         f"{openai:.3f}× the openai SDK, {litellm:.3f}× LiteLLM",
         f"{verdict(openai, 0.5)}, {verdict(litellm, 0.125)} — before the restore"),
        *snapstart_marks_rows(cold["run step, SnapStart, marks"]),
        ("  margin left for Lambda's restore (0.5 × openai − row; 0.125 × LiteLLM − row)",
         f"{margins['openai']:.0f} ms; {margins['litellm']:.0f} ms", "", ""),
    ]  # fmt: skip


def snapstart_marks_rows(marks: list[dict[str, float]]) -> list[Row]:
    """The emulated SnapStart run step in steps (medians of each mark, from the fork)."""
    names = ["first AWS call", "provider request sent", "provider answered", "answer"]
    labels = ["after_restore → first AWS call answered (GetItem, the client made before the "
              "snapshot)", "→ provider request sent (claim, key: GetSecretValue, overlay, "
              "prepare)", "→ provider answered (headers)", "→ answer (body, S3, record, settle)"]  # fmt: skip
    rows: list[Row] = []
    previous = 0.0
    for name, label in zip(names, labels, strict=True):
        at = med([m[name] for m in marks])
        rows.append((f"  run step, SnapStart: {label}", f"{at - previous:.0f} ms",
                     f"at {at:.0f} ms", ""))  # fmt: skip
        previous = at
    return rows


SNAPSTART_CAVEAT = (
    "SnapStart rows (emulated): fork() gives the child the parent's memory at once; Lambda's "
    "restore has to bring the snapshot's memory in first — its Restore Duration, which cannot be "
    "measured offline. So a SnapStart row is the part of a SnapStart cold start that is ours: "
    "the run step's targets hold in AWS only if the restore costs less than the margin left "
    "({openai:.0f} ms against the openai SDK's 0.5×, {litellm:.0f} ms against LiteLLM's 0.125×)."
)


def cold_marks_rows(marks: list[dict[str, float]], openai: float) -> list[Row]:
    """The run step's cold start in steps (medians of each mark, from the process's start),
    and the part an SDK also has: imports, and the provider exchange itself."""
    names = ["imports", "first AWS call", "provider request sent", "provider answered", "answer"]
    at = {name: med([m[name] for m in marks]) for name in names}
    rows: list[Row] = []
    previous = 0.0
    for name, label in zip(names, ("imports done", "→ first AWS call answered (botocore, "
                                   "session, client, GetItem)", "→ provider request sent (claim, "
                                   "key, overlay, prepare)", "→ provider answered (headers)",
                                   "→ answer (body, S3, record, settle)"), strict=True):  # fmt: skip
        rows.append((f"  run step, cold: {label}", f"{at[name] - previous:.0f} ms",
                     f"at {at[name]:.0f} ms", ""))  # fmt: skip
        previous = at[name]
    own = at["imports"] + at["provider answered"] - at["provider request sent"]
    ratio = own / openai
    rows.append(("  run step, cold, provider part only (imports + provider exchange)",
                 f"{own:.0f} ms", f"{ratio:.2f}× the openai SDK", verdict(ratio, 0.5)))  # fmt: skip
    return rows


def per_operation_rows(breakdown: dict) -> list[Row]:
    """The whole generation (direct, data URL) and the job floor, alternating: each AWS
    operation's median time as its caller sees it (on the wire in brackets), side by side, and
    what is left of each request once its AWS calls are taken out (the provider call, and the
    rest: our own work, or the floor's)."""
    ours, floor = breakdown["ours"], breakdown["floor"]
    rows: list[Row] = []
    for mine, theirs in zip(ours["operations"], floor["operations"], strict=True):
        rows.append((f"  per operation: {mine['operation']}",
                     f"{mine['call']:.1f} ms (wire {mine['wire']:.1f})",
                     f"job floor {theirs['call']:.1f} ms (wire {theirs['wire']:.1f})", ""))  # fmt: skip
    aws = {side: sum(op["call"] for op in item["operations"]) for side, item in breakdown.items()}
    rows.append(("  per operation: all AWS calls", f"{aws['ours']:.1f} ms",
                 f"job floor {aws['floor']:.1f} ms", ""))  # fmt: skip
    rows.append(("  per operation: the rest (provider call, JSON, records, logging…)",
                 f"{ours['total'] - aws['ours']:.1f} ms",
                 f"job floor {floor['total'] - aws['floor']:.1f} ms", ""))  # fmt: skip
    return rows


def authorizer_rows(result: dict) -> list[Row]:
    cold, warm = result["cold"], result["warm"]
    bare = med(cold["bare PyJWT"])
    rows: list[Row] = [
        ("cold: bare PyJWT (import jwt + decode)", spread(cold["bare PyJWT"]), "", "")
    ]
    for name, limit in (("authorizer", 1.1), ("authorizer, secret from the extension", None)):
        ratio = med(cold[name]) / bare
        rows.append((f"cold: {name}", spread(cold[name]), f"{ratio:.3f}×",
                     verdict(ratio, limit) if limit else "(+ a local HTTP call)"))  # fmt: skip
    ratio = med(warm["ratio"])  # median of paired rounds
    rows.append(("warm: bare jwt.decode, CPU per token", spread(warm["bare"], "µs", 1), "", ""))
    rows.append(("warm: authorizer handler, CPU per token", spread(warm["handler"], "µs", 1),
                 f"{ratio:.3f}×", verdict(ratio, 1.15)))  # fmt: skip
    return rows


def artifact_rows(local_assets) -> list[Row]:
    rows: list[Row] = []
    lambda_target = BuildTarget.lambda_runtime(log=lambda line: None)
    built = {
        f"arm64 / Python {lambda_target.python_version}"
        + ("" if lambda_target.compiled else ", sources only (no python3.14 here)"):
        build_lambda_assets(lambda_target, log=lambda line: None),
        f"this machine / Python {BuildTarget.this_machine().python_version}, with bytecode":
        local_assets,
    }  # fmt: skip
    for label, assets in built.items():
        for function, size in bench_generation.artifact_sizes(assets).items():
            rows.append((f"zipped artifact: {function} (code + layers), {label}",
                         f"{size / 1e6:.2f} MB", "", ""))  # fmt: skip
    return rows


def print_table(title: str, rows: list[Row]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"\n{title}\n" + "-" * (sum(widths) + 6))
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-runs", type=int, default=7, help="fresh processes per contender")
    parser.add_argument("--warm-runs", type=int, default=40, help="timed warm requests")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU(s); "
          f"load average before: {load()}", flush=True)  # fmt: skip
    generation = bench_generation.run(args.cold_runs, args.warm_runs)
    authorizer = bench_authorizer.run(args.cold_runs)
    after = load()
    image = generation["image_bytes"]
    print_table(f"Generation (image: {image / 1e6:.2f} MB PNG; cold: {args.cold_runs} fresh "
                f"processes each; warm: {args.warm_runs} requests)",
                generation_rows(generation))  # fmt: skip
    print("\n" + textwrap.fill(SNAPSTART_CAVEAT.format(**snapstart_margins(generation["cold"])),
                               width=100))  # fmt: skip
    print_table("Authorizer (HS256)", authorizer_rows(authorizer))
    print_table("Artifact", artifact_rows(deployed_assets()))
    print(f"\nload average after: {after}")
    raw = ROOT / "build" / "bench" / "last-run.json"  # every sample, and each AWS call by name
    raw.write_text(json.dumps({"generation": generation, "authorizer": authorizer}, default=str))
    print(f"raw numbers: {raw.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
