"""`make loadtest`: Locust headless against a target, stage by stage, CSV + HTML kept, exit 1 on a missed limit."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent


class Stage(BaseModel):
    users: int = Field(ge=1)
    duration_s: int = Field(ge=1)
    min_rps: float = Field(default=0.0, ge=0)
    max_p95_ms: float = Field(gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)


class Gate(BaseModel):
    stages: list[Stage]

    @classmethod
    def load(cls, path: Path) -> Gate:
        return cls.model_validate(yaml.safe_load(path.read_text()))


def locust_command(target: str, users: int, seconds: int, prefix: Path) -> list[str]:
    """Headless Locust with the persona mix against `target` for `seconds`; CSV and HTML under `prefix`."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--host",
        target,
        "-u",
        str(users),
        "-r",
        str(max(users // 4, 1)),
        "-t",
        f"{seconds}s",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--only-summary",
        "--exit-code-on-error",
        "0",
    ]


def run_stage(target: str, stage: Stage, out: Path) -> dict[str, float]:
    """One headless Locust run; its aggregated numbers from the stats CSV."""
    prefix = out / f"users{stage.users}"
    subprocess.run(locust_command(target, stage.users, stage.duration_s, prefix), check=True)
    return {"users": stage.users, **read_stats(prefix)}


def read_stats(prefix: Path) -> dict[str, float]:
    """The aggregated row of a finished Locust run's stats CSV: requests, failures, requests/s, p50, p95."""
    with open(f"{prefix}_stats.csv") as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    requests = float(total["Request Count"])
    return {
        "requests": requests,
        "failures": float(total["Failure Count"]),
        "rps": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]),
        "p95_ms": float(total["95%"]),
        "error_rate": float(total["Failure Count"]) / requests if requests else 1.0,
    }


def misses(stage: Stage, numbers: dict[str, float]) -> list[str]:
    """The limits of `stage` its numbers miss (none: the stage passes)."""
    found = []
    if numbers["requests"] == 0:
        return ["no request was answered"]
    if numbers["rps"] < stage.min_rps:
        found.append(f"{numbers['rps']:.2f} requests/s < {stage.min_rps}")
    if numbers["p95_ms"] > stage.max_p95_ms:
        found.append(f"p95 {numbers['p95_ms']:.0f} ms > {stage.max_p95_ms:.0f} ms")
    if numbers["error_rate"] > stage.max_error_rate:
        found.append(f"error rate {numbers['error_rate']:.3f} > {stage.max_error_rate}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="Base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--config", type=Path, default=HERE / "thresholds.yaml")
    parser.add_argument("--out", type=Path, default=Path("artifacts/loadtest"))
    parser.add_argument("--duration", type=int, default=None, help="Override every stage's duration (seconds).")
    args = parser.parse_args(argv)
    if not args.target:
        parser.error("--target is empty; pass TARGET=http://host:port (or set TQA_LOAD_TARGET).")
    gate = Gate.load(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for stage in gate.stages:
        if args.duration:
            stage.duration_s = args.duration
        numbers = run_stage(args.target, stage, args.out)
        missed = misses(stage, numbers)
        failed |= bool(missed)
        print(
            f"{stage.users} users: {numbers['rps']:.2f} requests/s, p50 {numbers['p50_ms']:.0f} ms, "
            f"p95 {numbers['p95_ms']:.0f} ms, errors {numbers['error_rate']:.3%} -> "
            + ("FAIL: " + "; ".join(missed) if missed else "pass")
        )
    print(f"CSV and HTML reports in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
