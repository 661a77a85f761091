"""Benchmark target-miso against a yardstick measured in the same run (not a test).

For each API latency it starts the local sandbox, pipes the same Singer input through
target-miso and through scripts/yardstick.py (orjson + plain mapping + requests, 4 in
flight), and prints records/s, CPU seconds and peak RSS of each, and the ratios.

    .venv/bin/python scripts/benchmark.py                       # 100k interaction records
    .venv/bin/python scripts/benchmark.py --shape snowplow      # 114-column Snowplow rows
    .venv/bin/python scripts/benchmark.py --records 1000000 --latency 0
    .venv/bin/python scripts/benchmark.py --vendor              # + target-miso==0.9.5 (PyPI)

``--pipeline`` measures the whole pipeline instead: N Snowplow events in Postgres (the
loader's layout), the tap, target-miso and ``meltano run``, per extract configuration: the
shipped ``copy`` (tap-postgres-copy on the narrow view) against ``select-all`` (tap-postgres,
every column) and the other tap-postgres ones (scripts/benchmark_pipeline.py;
docs/performance.md):

    .venv/bin/python scripts/benchmark.py --pipeline --records 1000000 --latency 0
    .venv/bin/python scripts/benchmark.py --pipeline --records 20000 --latency 0 \
        --configurations select-all copy --steps tap target meltano
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
API_KEY = "benchmark-key"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def interaction_lines(count: int):
    """Interaction-shaped rows, as a table already shaped like Miso's records gives."""
    schema = {
        "type": "SCHEMA",
        "stream": "interactions",
        "key_properties": [],
        "schema": {
            "properties": {
                name: {}
                for name in (
                    "type",
                    "user_id",
                    "anonymous_id",
                    "timestamp",
                    "product_ids",
                    "context",
                )
            },
        },
    }
    yield json.dumps(schema)
    for i in range(count):
        record = {
            "type": "product_detail_page_view",
            "user_id": f"user-{i % 5000}" if i % 3 else None,
            "anonymous_id": f"0d4a6e5c-{i % 20000:08d}",
            "timestamp": (
                f"2024-05-01 {(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}"
                f".{i % 1000:03d}"
            ),
            "product_ids": [f"sku-{i % 40000}"],
            "context": {
                "page": {"url": f"https://shop.example/p/sku-{i % 40000}", "title": "A product"},
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
                "locale": "en-US",
            },
        }
        yield json.dumps({"type": "RECORD", "stream": "interactions", "record": record})
        if i % 10_000 == 9_999:
            yield json.dumps({"type": "STATE", "value": {"bookmarks": {"interactions": {"n": i}}}})


def snowplow_lines(count: int):
    """Realistic Snowplow rows (TSV-shaped atomic.events), from the project's generator."""
    sys.path.insert(0, str(ROOT))
    from target_miso import samples  # noqa: PLC0415

    yield from samples.benchmark_singer_lines(count)


def write_input(shape: str, count: int, path: Path) -> None:
    """Write `count` Singer lines of the given shape to `path`."""
    lines = snowplow_lines(count) if shape == "snowplow" else interaction_lines(count)
    with path.open("w") as out:
        for line in lines:
            out.write(line + "\n")


class Sandbox:
    """The sandbox API in its own process."""

    def __init__(self, latency_ms: int, *faults: str) -> None:
        """Start the sandbox on a free port and wait (up to 15 s) until it answers.

        ``faults`` are more command-line options, e.g. ``--rate-503 0.05``.
        """
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(BIN / "target-miso-sandbox"),
                "--port",
                str(self.port),
                "--api-key",
                API_KEY,
                "--latency-ms",
                str(latency_ms),
                *faults,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the sandbox did not start")

    def stats(self) -> dict:
        """Return the sandbox's counters."""
        with urllib.request.urlopen(f"{self.url}/_sandbox/stats", timeout=5) as answer:
            return json.load(answer)

    def reset(self) -> None:
        """Forget everything the sandbox received."""
        request = urllib.request.Request(f"{self.url}/_sandbox/reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        """Terminate the sandbox process and wait for it."""
        self.process.terminate()
        self.process.wait(timeout=10)


def run_measured(command: list[str], input_path: Path) -> dict:
    """Run a command on the input: wall time, and the CPU and peak RSS of that process alone."""
    with input_path.open("rb") as stdin, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            sys.stderr.write(errors.read().decode()[-3000:])
            raise RuntimeError(f"{command[0]} failed with exit code {process.returncode}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
    }


def target_command(sandbox: Sandbox, workdir: Path, shape: str) -> list[str]:
    """Write a target-miso config for this sandbox and return the command that runs it."""
    config = {
        "api_url": sandbox.url,
        "api_key": API_KEY,
        "max_requests_per_second": 0,  # the yardstick has no rate limit either
        "rejects_path": str(workdir / "rejects.jsonl"),
        "progress_log_seconds": 0,
    }
    if shape == "snowplow":
        # The demo's URL rules; a fresh event id store per run (or the second run sends nothing).
        from target_miso import samples  # noqa: PLC0415

        store = workdir / f"event-ids-{time.monotonic_ns()}.sqlite"
        options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": str(store)}
        config["mappings"] = {"atomic-events": options}
    path = workdir / "target-config.json"
    path.write_text(json.dumps(config))
    return [str(BIN / "target-miso"), "--config", str(path)]


VENDOR_VENV = ROOT / "output" / "bench" / "vendor-venv"


def install_vendor() -> Path:
    """Install the vendor's target-miso 0.9.5 from PyPI into a venv kept under output/bench."""
    python = VENDOR_VENV / "bin" / "python"
    if not (VENDOR_VENV / "bin" / "target-miso").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENDOR_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "target-miso==0.9.5"], check=True
        )
    return VENDOR_VENV / "bin" / "target-miso"


def vendor_command(executable: Path, sandbox: Sandbox, workdir: Path, shape: str) -> list[str]:
    """Return the command for the vendor target, with a template doing the yardstick's mapping."""
    import inspect  # noqa: PLC0415

    sys.path.insert(0, str(ROOT / "scripts"))
    import yardstick  # noqa: PLC0415

    templates = workdir / "vendor-templates"
    templates.mkdir(exist_ok=True)
    mapper = yardstick.map_snowplow if shape == "snowplow" else yardstick.map_interaction
    source = "MISO_FIELDS = " + repr(yardstick.MISO_FIELDS) + "\n" + inspect.getsource(mapper)
    stream = "atomic-events" if shape == "snowplow" else "interactions"
    (templates / f"{stream}.py").write_text(f"{source}\ntransform = {mapper.__name__}\n")
    config = {"api_server": sandbox.url, "api_key": API_KEY, "template_folder": str(templates)}
    path = workdir / "vendor-config.json"
    path.write_text(json.dumps(config))
    return [str(executable), "--config", str(path)]


def main() -> None:
    """Measure each program at each latency and print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shape", choices=["interactions", "snowplow"], default="interactions")
    parser.add_argument(
        "--latency", type=int, nargs="+", default=[0, 50], help="API latencies to measure, in ms"
    )
    parser.add_argument(
        "--vendor",
        action="store_true",
        help="also run the vendor's target-miso==0.9.5 (needs PyPI)",
    )
    sys.path.insert(0, str(ROOT / "scripts"))
    import benchmark_pipeline  # noqa: PLC0415

    benchmark_pipeline.add_arguments(parser)
    args = parser.parse_args()
    if args.pipeline:
        benchmark_pipeline.run_pipeline_benchmark(args, Sandbox, API_KEY)
        return

    vendor = install_vendor() if args.vendor else None
    with tempfile.TemporaryDirectory(prefix="miso-bench-") as tmp:
        workdir = Path(tmp)
        input_path = workdir / "input.singer"
        write_input(args.shape, args.records, input_path)
        size_mb = input_path.stat().st_size / 1e6
        print(
            f"input: {args.records} {args.shape} records, {size_mb:.0f} MB; "
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}"
        )
        rows = []
        for latency in args.latency:
            sandbox = Sandbox(latency)
            try:
                results = {}
                programs = [
                    ("target-miso", target_command(sandbox, workdir, args.shape)),
                    (
                        "yardstick",
                        [
                            sys.executable,
                            str(ROOT / "scripts" / "yardstick.py"),
                            sandbox.url,
                            API_KEY,
                            args.shape,
                        ],
                    ),
                ]
                if vendor is not None:
                    programs.append(
                        ("vendor 0.9.5", vendor_command(vendor, sandbox, workdir, args.shape))
                    )
                for name, command in programs:
                    sandbox.reset()
                    result = run_measured(command, input_path)
                    result["delivered"] = sandbox.stats()["interactions_accepted"]
                    results[name] = result
                    rows.append((latency, name, result))
            finally:
                sandbox.stop()
        print()
        print(
            f"{'latency':>8} {'program':<13} {'records/s':>10} {'wall s':>7} {'CPU s':>6} "
            f"{'CPU us/rec':>10} {'peak RSS MB':>11} {'delivered':>9}"
        )
        for latency, name, result in rows:
            print(
                f"{latency:>6}ms {name:<13} {args.records / result['wall']:>10,.0f} "
                f"{result['wall']:>7.2f} {result['cpu']:>6.2f} "
                f"{result['cpu'] / args.records * 1e6:>10.1f} {result['rss_mb']:>11.0f} "
                f"{result['delivered']:>9}"
            )
        print()
        by = {(latency, name): result for latency, name, result in rows}
        for latency in args.latency:
            ratio = by[(latency, "yardstick")]["wall"] / by[(latency, "target-miso")]["wall"]
            print(f"target-miso / yardstick records/s at {latency} ms: {ratio:.2f}x")
            if vendor is not None:
                ratio = by[(latency, "vendor 0.9.5")]["wall"] / by[(latency, "target-miso")]["wall"]
                print(f"target-miso / vendor 0.9.5 records/s at {latency} ms: {ratio:.2f}x")
        if len(args.latency) > 1:
            base, slow = args.latency[0], args.latency[-1]
            cost = by[(slow, "target-miso")]["wall"] / by[(base, "target-miso")]["wall"] - 1
            print(f"cost of {slow} ms latency for target-miso: {cost:+.0%} wall time")


if __name__ == "__main__":
    main()
