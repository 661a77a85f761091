"""The pipeline benchmark: Snowplow rows in Postgres -> a tap -> target-miso -> sandbox.

Run through ``scripts/benchmark.py --pipeline`` (docs/performance.md). It loads N events in
the Snowplow Postgres loader's layout (the sample events copied with fresh ids,
``target_miso.sample_postgres``) into a database of its own, creates the shipped views, and
for each extract configuration (a tap, tap-postgres-copy or MeltanoLabs' tap-postgres, and
what it reads) measures, in one run and against one sandbox:

* the tap alone (its Singer output written to a file: the bytes that cross the pipe),
* the target alone on that file,
* ``meltano run <tap> target-miso`` end to end, with the repo's meltano.yml,
* for the shipped configuration (``copy``: tap-postgres-copy on the narrow view), the same
  against a sandbox that fails requests, and partitions (each through the tap's
  ``stream_options`` WHERE clause; a tap without that setting is skipped, saying so),

printing rows/s, CPU seconds and peak RSS per process (the Postgres backend that serves the
tap included) and the ratios the issue asks about, the shipped configuration against
``select-all`` (tap-postgres reading every column, as before). Processes inside
``meltano run`` are sampled from /proc every 0.1 s (CPU to within that); the others are
exact (``wait4``). Needs ``meltano install`` (the plugins under .meltano/) and a Postgres
that the user can create databases on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import psycopg
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / ".meltano"
TARGET = PLUGINS / "loaders/target-miso/venv/bin/target-miso"
MELTANO = Path(sys.executable).with_name("meltano")
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.1

sys.path.insert(0, str(ROOT))
from target_miso import sample_postgres, samples  # noqa: E402

SAMPLE_EVENTS = len(samples.sample_events())


@functools.cache
def extractor(name: str) -> dict[str, t.Any]:
    """Return meltano.yml's definition of the extractor ``name``."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    found = [p for p in project["plugins"]["extractors"] if p["name"] == name]
    if not found:
        sys.exit(f"meltano.yml has no extractor {name}")
    return t.cast("dict[str, t.Any]", found[0])


def executable(tap: str) -> Path:
    """Return where ``meltano install`` puts a tap's executable (named as the tap here)."""
    return PLUGINS / "extractors" / tap / "venv/bin" / tap


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One way of getting the rows out (a tap and what it reads), and the target's mapping."""

    name: str
    stream: str
    #: The extractor of meltano.yml that reads it.
    tap: str = "tap-postgres"
    #: meltano.yml's select list and metadata for ``tap`` are this stream's (else every
    #: column is selected, through the catalog or ``<TAP>__SELECT``).
    meltano_yml: bool = False
    #: The configuration the ratios are about (the one meltano.yml's job runs).
    shipped: bool = False
    payload: bool = False
    batch: bool = False

    def columns(self) -> list[str] | None:
        """Return meltano.yml's select patterns for the stream, else None (every column)."""
        if not self.meltano_yml:
            return None
        prefix = f"{self.stream}."
        selected = extractor(self.tap)["select"]
        found = [entry[len(prefix) :] for entry in selected if entry.startswith(prefix)]
        if not found:
            sys.exit(f"meltano.yml's {self.tap} selects nothing of {self.stream}")
        return found

    def tap_config(self) -> dict[str, t.Any]:
        """Return meltano.yml's config for the tap (the connection is the benchmark's)."""
        return dict(extractor(self.tap).get("config") or {})

    def env_prefix(self) -> str:
        """Return the prefix of Meltano's environment variables for the tap's settings."""
        return self.tap.upper().replace("-", "_")

    def partition_setting(self) -> str | None:
        """Return the tap's setting that reads part of a stream (a WHERE clause), if any."""
        names = {setting["name"] for setting in extractor(self.tap).get("settings") or []}
        return "stream_options" if "stream_options" in names else None

    def mapping(self, store: Path) -> dict[str, t.Any]:
        """Return the target's ``mappings`` for this stream, with its event-id store file."""
        options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": str(store)}
        options["state_lookback_seconds"] = 86400  # as shipped; a first run reads everything
        if self.payload:
            options["payload_column"] = "payload"
        return {self.stream: options}


CONFIGURATIONS = {
    "select-all": Configuration("select * (before)", "atomic-events_for_miso"),
    "narrow": Configuration("narrow view", "atomic-events_for_miso_narrow"),
    "json": Configuration("tap-postgres json (previous)", "atomic-events_for_miso_json",
                          meltano_yml=True, payload=True),
    "json-batch": Configuration("json payload, batch", "atomic-events_for_miso_json",
                                meltano_yml=True, payload=True, batch=True),
    "copy": Configuration("COPY tap, narrow view (shipped)", "atomic-events_for_miso_narrow",
                          tap="tap-postgres-copy", meltano_yml=True, shipped=True),
}  # fmt: skip
(SHIPPED,) = [name for name, configuration in CONFIGURATIONS.items() if configuration.shipped]
TAPS = sorted({configuration.tap for configuration in CONFIGURATIONS.values()})


# --- Measuring processes ---------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Sampler:
    """Samples the CPU and peak RSS of the tap, the target and Postgres backends of a database."""

    #: A process of the run is the tap or the target when its command line names the
    #: plugin's venv (the trailing slash keeps tap-postgres's from matching
    #: tap-postgres-copy's).
    ROLES = (
        *(("tap", f"extractors/{tap}/") for tap in TAPS),
        ("target", "loaders/target-miso/"),
    )

    def __init__(self, database: str) -> None:
        """Look for the backends of ``database`` and, once ``root`` is set, its descendants."""
        #: The process whose descendants are looked at (set once it is started).
        self.root: int | None = None
        self.backend = f" {database} "
        #: pid -> (role, CPU seconds, peak RSS MB), last seen.
        self.seen: dict[int, tuple[str, float, float]] = {}
        #: CPU seconds of the processes already running when sampling began.
        self._before: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        """Take a first sample (what ran before does not count), then sample in a thread."""
        self.sample()
        self._before = {pid: seconds for pid, (_, seconds, _) in self.seen.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        """Read every process once: the CPU and peak RSS of those that play a role."""
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                found = _proc_stat(int(entry.name))
                if found is not None:
                    parents[int(entry.name)], cpu[int(entry.name)] = found
        for pid, seconds in cpu.items():
            role = self._role(pid, parents)
            if role is not None:
                self.seen[pid] = (role, seconds, max(_peak_rss_mb(pid), self._rss(pid)))

    def _rss(self, pid: int) -> float:
        return self.seen[pid][2] if pid in self.seen else 0.0

    def _role(self, pid: int, parents: dict[int, int]) -> str | None:
        if pid in self.seen:
            return self.seen[pid][0]
        if pid == self.root:
            return "root"
        command = _cmdline(pid)
        if command.startswith("postgres: ") and self.backend in command:
            return "postgres"
        if self.root is None or not self._descends(pid, parents):
            return None
        return next((role for role, path in self.ROLES if path in command), None)

    def _descends(self, pid: int, parents: dict[int, int]) -> bool:
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == self.root:
                return True
        return False

    def totals(self) -> dict[str, tuple[float, float]]:
        """Role -> (CPU seconds, peak RSS MB) over the processes of that role."""
        found: dict[str, tuple[float, float]] = {}
        for pid, (role, seconds, rss) in self.seen.items():
            before = found.get(role, (0.0, 0.0))
            used = seconds - self._before.get(pid, 0.0)
            found[role] = (before[0] + used, max(before[1], rss))
        return found


@dataclasses.dataclass
class Measured:
    """One process (or process tree) run."""

    wall: float
    cpu: float
    rss_mb: float
    parts: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    delivered: int = 0
    out_bytes: int = 0


def measure(
    command: list[str],
    *,
    database: str,
    stdin: Path | None = None,
    stdout: Path | None = None,
    env: dict[str, str] | None = None,
    tree: bool = False,
) -> Measured:
    """Run a command; its wall time, CPU and peak RSS (with its children), Postgres's share."""
    with contextlib.ExitStack() as files:
        source = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        sink = files.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
        errors = files.enter_context(tempfile.TemporaryFile())
        with Sampler(database) as sampler:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, stdin=source, stdout=sink, stderr=errors, env=env, cwd=ROOT
            )
            sampler.root = process.pid if tree else None
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            sys.stderr.write(errors.read().decode(errors="replace")[-4000:])
            raise RuntimeError(f"{Path(command[0]).name} failed: exit {status}")
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        parts=sampler.totals(),
        out_bytes=stdout.stat().st_size if stdout else 0,
    )


# --- The database ----------------------------------------------------------------------------


def load_database(admin_dsn: str, database: str, rows: int, *, jit: bool, reuse: bool) -> int:
    """Create ``database`` with about ``rows`` events (a multiple of the sample set) and views."""
    copies = max(0, math.ceil(rows / SAMPLE_EVENTS) - 1)
    wanted = SAMPLE_EVENTS * (copies + 1)
    dsn = make_conninfo(admin_dsn, dbname=database)
    if reuse:
        with contextlib.suppress(psycopg.Error), psycopg.connect(dsn) as conn:
            (count,) = conn.execute("SELECT count(*) FROM atomic.events").fetchone() or (0,)
            if count == wanted:
                sample_postgres.create_view(conn, "atomic")  # the script as it is now
                return count
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
        # Postgres's JIT adds seconds of planning to the view's query on every run
        # (docs/snowplow.md recommends turning it off for the tap's user).
        admin.execute(f'ALTER DATABASE "{database}" SET jit = {"on" if jit else "off"}')
    with psycopg.connect(dsn) as conn:
        sample_postgres.load_events(conn, "atomic", samples.sample_events(), create=True)
        count = sample_postgres.multiply_events(conn, "atomic", copies) if copies else wanted
        sample_postgres.create_view(conn, "atomic")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return count


def tap_settings(admin_dsn: str, database: str) -> dict[str, t.Any]:
    """Return the taps' connection settings for the benchmark database."""
    params = conninfo_to_dict(admin_dsn)
    return {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "user": params.get("user", "postgres"),
        "password": params.get("password") or os.environ.get("PGPASSWORD", "unused"),
        "database": database,
        "filter_schemas": ["atomic"],
    }


def catalog_for(discovered: dict[str, t.Any], configuration: Configuration) -> dict[str, t.Any]:
    """Return the discovered catalog with one stream selected, incremental on collector_tstamp.

    Its columns are those meltano.yml selects (patterns, as Meltano reads them) when the
    configuration says so, else every one.
    """
    catalog = json.loads(json.dumps(discovered))
    stream, columns = configuration.stream, configuration.columns()
    catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == stream]
    if not catalog["streams"]:
        sys.exit(f"{configuration.tap} did not discover {stream}")
    for entry in catalog["streams"][0]["metadata"]:
        breadcrumb = entry["breadcrumb"]
        entry["metadata"]["selected"] = (
            not breadcrumb
            or columns is None
            or any(fnmatch.fnmatchcase(breadcrumb[-1], pattern) for pattern in columns)
        )
        if breadcrumb == []:
            entry["metadata"]["replication-method"] = "INCREMENTAL"
            entry["metadata"]["replication-key"] = "collector_tstamp"
    return catalog


# --- The run ---------------------------------------------------------------------------------


def add_arguments(parser: t.Any) -> None:
    """Add the ``--pipeline`` options to scripts/benchmark.py's parser."""
    group = parser.add_argument_group("--pipeline (scripts/benchmark_pipeline.py)")
    group.add_argument("--pipeline", action="store_true", help="measure the whole pipeline")
    group.add_argument(
        "--pg",
        help="a libpq connection string to the server, as a user that may create databases "
        "(default: host=127.0.0.1 port=5432 user=postgres dbname=postgres)",
    )
    group.add_argument("--database", default="target_miso_bench", help="the database it creates")
    group.add_argument(
        "--reuse", action="store_true", help="keep the database when it has the same events"
    )
    group.add_argument("--jit", action="store_true", help="leave Postgres's JIT on")
    group.add_argument(
        "--configurations",
        nargs="+",
        default=list(CONFIGURATIONS),
        choices=list(CONFIGURATIONS),
        help=f"extract configurations ({SHIPPED} is the shipped one)",
    )
    group.add_argument(
        "--steps",
        nargs="+",
        default=["tap", "target", "meltano", "faults"],
        choices=list(MEASURE),
        help="what to run (faults and partitions: the shipped configuration only; "
        "partitions: --partitions pipelines at once, when its tap can read part of a stream)",
    )
    group.add_argument("--partitions", type=int, default=2, help="for --steps partitions")


@dataclasses.dataclass
class Bench:
    """What every measurement of one benchmark run shares."""

    database: str
    settings: dict[str, t.Any]
    #: Tap name -> its discovered catalog.
    discovered: dict[str, dict[str, t.Any]]
    sandbox: t.Any
    api_key: str
    sandbox_class: t.Any
    latency: int
    partitions: int


def run_pipeline_benchmark(args: t.Any, sandbox_class: t.Any, api_key: str) -> None:
    """Measure each configuration: tap alone, target alone, meltano run; print the table."""
    t.cast("t.Any", sys.stdout).reconfigure(line_buffering=True)  # rows show as they come
    configurations = [CONFIGURATIONS[name] for name in args.configurations]
    taps = sorted({configuration.tap for configuration in configurations})
    missing = [p.name for p in [*map(executable, taps), TARGET] if not p.exists()]
    if missing:
        sys.exit(
            f"run `meltano install` first: the benchmark uses the plugins under .meltano/ "
            f"({', '.join(missing)} not installed)"
        )
    admin_dsn = args.pg or "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    started = time.perf_counter()
    rows = load_database(admin_dsn, args.database, args.records, jit=args.jit, reuse=args.reuse)
    print(
        f"database {args.database}: {rows:,} Snowplow events (the {SAMPLE_EVENTS} sample events "
        f"copied with fresh ids) and their shredded rows, loaded in "
        f"{time.perf_counter() - started:.0f} s; jit {'on' if args.jit else 'off'}; machine: "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    results: list[tuple[Configuration, str, Measured]] = []
    sandbox = sandbox_class(args.latency[0])
    try:
        with tempfile.TemporaryDirectory(prefix="miso-pipeline-") as tmp:
            workdir = Path(tmp)
            settings = tap_settings(admin_dsn, args.database)
            config = workdir / "tap.json"
            config.write_text(json.dumps(settings))
            discovered = {
                tap: json.loads(
                    subprocess.run(
                        [str(executable(tap)), "--config", str(config), "--discover"],
                        capture_output=True, text=True, check=True,
                    ).stdout
                )
                for tap in taps
            }  # fmt: skip
            _print_header()
            bench = Bench(args.database, settings, discovered, sandbox, api_key, sandbox_class,
                          args.latency[0], args.partitions)  # fmt: skip
            for number, configuration in enumerate(configurations):
                for step in args.steps:
                    if step in ("faults", "partitions") and not configuration.shipped:
                        continue  # the shipped pipeline only
                    if step == "partitions" and configuration.partition_setting() is None:
                        print(f"{configuration.name:<{NAME_WIDTH}} {STEP_NAMES[step]}: skipped, "
                              f"{configuration.tap} has no setting to read part of a stream "
                              f"(a WHERE clause, as tap-postgres's stream_options)")  # fmt: skip
                        continue
                    sandbox.reset()
                    measured = MEASURE[step](bench, configuration, workdir / str(number))
                    if step != "faults":
                        measured.delivered = sandbox.stats()["interactions_accepted"]
                    results.append((configuration, step, measured))
                    _print_row(configuration, step, measured, rows)
    finally:
        sandbox.stop()
    print()
    _print_ratios(results, rows)


def _tap_alone(bench: Bench, configuration: Configuration, workdir: Path) -> Measured:
    workdir.mkdir(parents=True, exist_ok=True)
    # meltano.yml's settings for the tap (e.g. tap-postgres-copy's omit_null_values), as
    # `meltano run` gives them, with the benchmark database's connection.
    tap_settings_ = {**configuration.tap_config(), **bench.settings}
    if configuration.batch:
        tap_settings_["batch_config"] = _batch_config(workdir / "batches")
    config = workdir / "tap.json"
    config.write_text(json.dumps(tap_settings_))
    catalog = workdir / "catalog.json"
    catalog.write_text(json.dumps(catalog_for(bench.discovered[configuration.tap], configuration)))
    output = workdir / "tap.singer"
    measured = measure(
        [str(executable(configuration.tap)), "--config", str(config), "--catalog", str(catalog)],
        database=bench.database,
        stdout=output,
    )
    if configuration.batch:
        measured.out_bytes += sum(f.stat().st_size for f in (workdir / "batches").iterdir())
    return measured


def _batch_config(directory: Path) -> dict[str, t.Any]:
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": directory.as_uri(), "prefix": "batch-"},
        "batch_size": 10000,
    }


def _target_alone(bench: Bench, configuration: Configuration, workdir: Path) -> Measured:
    output = workdir / "tap.singer"
    if not output.exists():
        _tap_alone(bench, configuration, workdir)
    config = workdir / "target.json"
    config.write_text(
        json.dumps(
            {
                "api_url": bench.sandbox.url,
                "api_key": bench.api_key,
                "max_requests_per_second": 0,
                "rejects_path": str(workdir / "rejects.jsonl"),
                "progress_log_seconds": 0,
                # The stores a run keeps, fresh for each (else the next run finds them).
                "resend_guard_store": str(workdir / f"guard-{time.monotonic_ns()}.sqlite"),
                "mappings": configuration.mapping(workdir / f"ids-{time.monotonic_ns()}.sqlite"),
            }
        )
    )
    return measure([str(TARGET), "--config", str(config)], database=bench.database, stdin=output)


#: The faults of the pipeline-level fault run: 503s, 429s and connections dropped before
#: the batch was stored (the target must send it again), about one request in five; batches
#: of 100 interactions make for enough requests to fail.
FAULTS = ("--rate-503", "0.08", "--rate-429", "0.08", "--drop-before-store", "0.04",
          "--seed", "7")  # fmt: skip


def _fault_run(bench: Bench, configuration: Configuration, workdir: Path) -> Measured:
    """``meltano run`` against a sandbox that fails requests: every interaction must arrive."""
    faulty = bench.sandbox_class(bench.latency, *FAULTS)
    try:
        fast_retries = {"TARGET_MISO_RETRY_INITIAL_DELAY": "0.05",
                        "TARGET_MISO_RETRY_MAX_DELAY": "0.5",
                        "TARGET_MISO_BATCH_SIZE_ROWS": "100"}  # fmt: skip
        measured = _meltano_run(
            dataclasses.replace(bench, sandbox=faulty), configuration, workdir, fast_retries
        )
        stats = faulty.stats()
        measured.delivered = stats["interactions_accepted"]
        print(f"  fault run: {sum(stats['faults'].values())} faults in "
              f"{stats['requests_total']} requests", flush=True)  # fmt: skip
    finally:
        faulty.stop()
    return measured


def _meltano_run(
    bench: Bench,
    configuration: Configuration,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> Measured:
    run_dir = workdir / f"meltano-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    env = _meltano_env(bench, configuration, run_dir)
    env.update(extra_env or {})
    return measure(
        [str(MELTANO), "run", configuration.tap, "target-miso"],
        database=bench.database,
        env=env,
        tree=True,
    )


def _partitioned(bench: Bench, configuration: Configuration, workdir: Path) -> Measured:
    """``bench.partitions`` pipelines at once, each on its share of the days, as workers.

    Each reads its share through the tap's ``stream_options`` (a WHERE clause); the caller
    skips taps without it.
    """
    count = bench.partitions
    runs: list[tuple[subprocess.Popen[bytes], t.IO[bytes]]] = []
    with Sampler(bench.database) as sampler:
        started = time.perf_counter()
        for index in range(count):
            run_dir = workdir / f"partition-{index}-{time.monotonic_ns()}"
            # Each partition is its own worker: its own Meltano sys dir (generated configs),
            # the installed plugins shared (docs/meltano.md, "Running partitions in parallel").
            sys_dir = run_dir / ".meltano"
            sys_dir.mkdir(parents=True)
            for kind in ("extractors", "loaders"):
                (sys_dir / kind).symlink_to(PLUGINS / kind)
            env = _meltano_env(bench, configuration, run_dir)
            # Whole days, so that a page view and its pings stay in one partition.
            clause = f"mod(extract(doy from collector_tstamp)::int, {count}) = {index}"
            env["MELTANO_SYS_DIR_ROOT"] = str(sys_dir)
            env[f"{configuration.env_prefix()}_STREAM_OPTIONS"] = json.dumps(
                {configuration.stream: {"custom_where_clauses": [clause]}}
            )
            errors = tempfile.TemporaryFile()
            command = [str(MELTANO), "run", "--state-id-suffix", f"part{index}",
                       configuration.tap, "target-miso"]  # fmt: skip
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=ROOT
            )
            runs.append((process, errors))
        cpu, rss = 0.0, 0.0
        for process, errors in runs:
            _, status, usage = os.wait4(process.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                errors.seek(0)
                sys.stderr.write(errors.read().decode(errors="replace")[-4000:])
                raise RuntimeError(f"a partition failed: exit {status}")
            errors.close()
            cpu += usage.ru_utime + usage.ru_stime
            rss = max(rss, usage.ru_maxrss / 1024)
        wall = time.perf_counter() - started
    return Measured(wall=wall, cpu=cpu, rss_mb=rss, parts=sampler.totals())


def _meltano_env(bench: Bench, configuration: Configuration, run_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_MISO_", "TAP_"))}
    settings = bench.settings
    tap = configuration.env_prefix()  # TAP_POSTGRES, TAP_POSTGRES_COPY
    env.update(
        {
            f"{tap}_HOST": str(settings["host"]),
            f"{tap}_PORT": str(settings["port"]),
            f"{tap}_USER": str(settings["user"]),
            f"{tap}_PASSWORD": str(settings["password"]),
            f"{tap}_DATABASE": bench.database,
        },
        MELTANO_DATABASE_URI=f"sqlite:///{run_dir / 'meltano.db'}",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_ENVIRONMENT="dev",
        TARGET_MISO_API_URL=bench.sandbox.url,
        TARGET_MISO_API_KEY=bench.api_key,
        TARGET_MISO_MAX_REQUESTS_PER_SECOND="0",
        TARGET_MISO_PROGRESS_LOG_SECONDS="0",
        TARGET_MISO_REJECTS_PATH=str(run_dir / "rejects.jsonl"),
        TARGET_MISO_RESEND_GUARD_STORE=str(run_dir / "resend-guard.sqlite"),
        TARGET_MISO_MAPPINGS=json.dumps(configuration.mapping(run_dir / "ids.sqlite")),
    )
    if not configuration.meltano_yml:  # else the select and metadata are meltano.yml's own
        columns = configuration.columns() or ["*"]
        env[f"{tap}__SELECT"] = json.dumps([f"{configuration.stream}.{c}" for c in columns])
        env[f"{tap}__METADATA"] = json.dumps(
            {
                configuration.stream: {
                    "replication-method": "INCREMENTAL",
                    "replication-key": "collector_tstamp",
                }
            }
        )
    if configuration.batch:
        env[f"{tap}_BATCH_CONFIG"] = json.dumps(_batch_config(run_dir / "batches"))
    return env


MEASURE = {"tap": _tap_alone, "target": _target_alone, "meltano": _meltano_run,
           "faults": _fault_run, "partitions": _partitioned}  # fmt: skip
STEP_NAMES = {"tap": "tap alone", "target": "target alone", "meltano": "meltano run",
              "faults": "meltano run, faults", "partitions": "meltano run, partitions"}  # fmt: skip


#: Width of the table's first column: the longest configuration name.
NAME_WIDTH = max(len(configuration.name) for configuration in CONFIGURATIONS.values())


def _print_header() -> None:
    print()
    print(
        f"{'configuration':<{NAME_WIDTH}} {'process':<22} {'rows/s':>8} {'wall s':>7} "
        f"{'CPU s':>6} {'CPU us/row':>10} {'peak RSS MB':>11} {'bytes/row':>9} {'delivered':>9}"
    )


def _print_row(configuration: Configuration, step: str, measured: Measured, rows: int) -> None:
    per_row = f"{measured.out_bytes / rows:>9,.0f}" if measured.out_bytes else f"{'':>9}"
    print(
        f"{configuration.name:<{NAME_WIDTH}} {STEP_NAMES[step]:<22} "
        f"{rows / measured.wall:>8,.0f} {measured.wall:>7.1f} {measured.cpu:>6.1f} "
        f"{measured.cpu / rows * 1e6:>10.0f} {measured.rss_mb:>11.0f} {per_row} "
        f"{measured.delivered if step != 'tap' else '':>9}"
    )
    if step in ("meltano", "faults"):  # Meltano itself: start-up, relaying every line
        parts = measured.parts
        own = measured.cpu - sum(parts.get(role, (0.0, 0.0))[0] for role in ("tap", "target"))
        rss = parts.get("root", (0.0, 0.0))[1]
        print(f"{'':<{NAME_WIDTH}} {'  - meltano (the rest)':<22} {'':>8} {'':>7} {own:>6.1f} "
              f"{own / rows * 1e6:>10.0f} {rss:>11.0f}")  # fmt: skip
    for role in ("tap", "target", "postgres"):
        if role in measured.parts and (step in ("meltano", "faults") or role == "postgres"):
            seconds, rss = measured.parts[role]
            label = f"  - {role} (sampled)"
            print(
                f"{'':<{NAME_WIDTH}} {label:<22} {'':>8} {'':>7} {seconds:>6.1f} "
                f"{seconds / rows * 1e6:>10.0f} {rss if role != 'postgres' else 0:>11.0f}"
            )


def _print_ratios(results: list[tuple[Configuration, str, Measured]], rows: int) -> None:
    by = {(c.name, step): m for c, step, m in results}
    before = CONFIGURATIONS["select-all"].name
    previous = CONFIGURATIONS["json"].name
    shipped = CONFIGURATIONS[SHIPPED].name
    if any(name == shipped for name, _ in by):
        print(f"shipped: {SHIPPED} ({shipped}); before: select-all ({before})")

    def ratio(text: str, top: tuple[str, str], bottom: tuple[str, str], attr: str) -> None:
        if top in by and bottom in by:
            value = getattr(by[top], attr) / getattr(by[bottom], attr)
            print(f"{text}: {value:.2f}x")

    ratio("shipped meltano run / select * meltano run, rows/s (goal >= 4x)",
          (before, "meltano"), (shipped, "meltano"), "wall")  # fmt: skip
    ratio("shipped meltano run / target alone on its own tap's output, rows/s (goal >= 0.5x)",
          (shipped, "target"), (shipped, "meltano"), "wall")  # fmt: skip
    ratio("shipped tap alone / select * tap alone, rows/s",
          (before, "tap"), (shipped, "tap"), "wall")  # fmt: skip
    ratio("shipped bytes per row / select * bytes per row (goal <= 0.4x)",
          (shipped, "tap"), (before, "tap"), "out_bytes")  # fmt: skip
    ratio("CPU of the whole select * meltano run / the shipped one (all processes, Postgres's "
          "backend not counted)", (before, "meltano"), (shipped, "meltano"), "cpu")  # fmt: skip
    ratio("shipped meltano run / tap-postgres json (previous) meltano run, rows/s",
          (previous, "meltano"), (shipped, "meltano"), "wall")  # fmt: skip
    ratio("partitions at once / one run, rows/s", (shipped, "meltano"), (shipped, "partitions"),
          "wall")  # fmt: skip
    if (shipped, "faults") in by and (shipped, "meltano") in by:
        clean, faulty = by[(shipped, "meltano")].delivered, by[(shipped, "faults")].delivered
        verdict = "nothing lost" if faulty == clean else f"{clean - faulty} LOST"
        print(f"fault run: {faulty} interactions delivered, {clean} without faults: {verdict}")
    _print_peaks(results, shipped)


def _print_peaks(results: list[tuple[Configuration, str, Measured]], shipped: str) -> None:
    """Peak RSS per process: the shipped configuration's tap and target, and the largest."""
    peaks: dict[str, list[float]] = {"tap": [], "target": []}
    largest = 0.0
    for configuration, step, measured in results:
        found = [(role, rss) for role, (_, rss) in measured.parts.items() if role in peaks]
        if step in peaks:  # alone: the process itself, exact
            found.append((step, measured.rss_mb))
        for role, rss in found:
            largest = max(largest, rss)
            if configuration.name == shipped:
                peaks[role].append(rss)
    if any(peaks.values()):
        each = ", ".join(f"{role} {max(found):.0f} MB" for role, found in peaks.items() if found)
        print(f"shipped peak RSS per process: {each} (goal <= 150 MB)")
    if largest:
        print(f"largest peak RSS of a tap or target process: {largest:.0f} MB (goal <= 150 MB)")
    meltano = [m.parts["root"][1] for _, step, m in results if "root" in m.parts]
    if meltano:
        print(f"largest peak RSS of meltano itself: {max(meltano):.0f} MB")
