"""Reading an experiment on S3-compatible storage against the same experiment on local disk.

A real S3 protocol server (moto's ``ThreadedMotoServer``, in this process, on
127.0.0.1) sits behind a small TCP proxy, also in this process, that makes it
a store 25 ms away (``--latency-ms``). What exactly the proxy does: the first
bytes of each request — the first bytes a client sends on a connection, and
the first it sends after a response began to come back on it — are held 25 ms
before they are forwarded; responses pass at once. So every request/response
round trip costs 25 ms more, like a store at 25 ms round-trip time, and
requests on parallel connections are delayed in parallel. Opening a connection
costs nothing extra (plain HTTP, no TLS handshake): against a real HTTPS
endpoint a cold reader pays one or two round trips more per connection (up to
8 connections in parallel, ``mirror.FETCH_THREADS``). moto handles requests in
threads of this process, so its CPU work shares the GIL with the reader: the
S3 figures include it.

Experiments of 200 and 5,000 runs (50 runs per kernel session, 400 samples per
run: 80,000 and 2 million samples — smaller per run than
``benchmarks/dashboard.py``'s 10 million samples at 5,000 runs, to keep the
whole benchmark to a few minutes on two cores) are written once with that
benchmark's generator (the real writer: ``JournalWriter`` journals, then
``compact_writer`` per session, then ``compact_experiment`` merges them, as
``mlt-kernel compact`` does), cached under ``--data``, and uploaded with
``mlt_kernel.store.remote.push`` in two layouts (``--layouts``): ``merged``, as
``mlt-kernel compact`` leaves it (one file per table: 8 objects), and ``parts``,
the same records as the sessions' syncs leave them before any merge (one part
per session and table: 29 objects at 200 runs, 701 at 5,000; a live sync
uploads a part per table every 10 s, so a real unmerged bucket holds more).
Measured in one run, beside the same folder on local disk:

- the compare-all-runs query ``Experiment.runs()``: cold (a new ``Experiment``
  with an empty mirror: ``XDG_CACHE_HOME`` is a fresh folder for each cold
  measurement; median of ``--cold`` tries; imports and boto3's first load are
  done before) and warm (median of repeats on an open ``Experiment``; each call
  refreshes, which for S3 is one LIST request);
- one run's timeline ``Experiment.samples(run=…)``, warm;
- the dashboard's start to first data: ``Source(url)`` + ``source.runs()`` +
  ``source.counts()``, cold (server start and the browser's rendering are the
  same as for a local folder: see ``benchmarks/dashboard.py``);
- requests and time of ``Mirror.refresh()`` on a warm mirror with nothing new,
  and with one new part in the bucket (counted by ``Bucket.requests``, where a
  LIST is a GET of the bucket; the other rows count requests at the proxy, by
  kind, from their request lines).

Targets: warm summary <= 2x local; cold summary <= 1.5 s at 200 runs; the
dashboard's first page with data <= 5 s. The default run takes about 3.5 minutes
on two cores the first time (a minute of it writing the experiments), 2 after;
``--quick`` (200 runs only) about half a minute.

    python benchmarks/object_storage.py [--runs 200,5000] [--quick] [--layouts merged,parts]
        [--latency-ms 25] [--cold 3] [--repeat 15] [--data DIR] [--rebuild]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlt_kernel.core import layout
from mlt_kernel.core.locations import parse_remote
from mlt_kernel.store.compaction import compact_experiment

RUNS_PER_SESSION = 50
BUCKET = "mlt-bench"


def _generator() -> Any:
    """``benchmarks/dashboard.py``, whose ``_session`` writes one kernel session with the real writer."""
    name = "mlt_bench_dashboard"  # a module name of its own, so that the pool's workers find ``_session``
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("dashboard.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# -- the experiments ---------------------------------------------------------------------------


def build(exp: Path, runs: int, samples: int) -> float:
    """Write *runs* runs in sessions of 50 with the real writer; keep a copy of the per-session parts
    (``exp`` + ``-parts``), then merge *exp*; returns seconds spent."""
    import multiprocessing

    gen = _generator()
    started = time.perf_counter()
    parts = exp.with_name(f"{exp.name}-parts")
    for folder in (exp, parts):
        if folder.exists():
            shutil.rmtree(folder)
    layout.ensure_layout(exp)
    sessions = max(1, runs // RUNS_PER_SESSION)
    jobs = [(exp, i, min(runs, RUNS_PER_SESSION), samples, i) for i in range(sessions)]
    with multiprocessing.Pool(max(1, min(os.cpu_count() or 1, 4))) as pool:
        for _ in pool.imap_unordered(gen._session, jobs):
            pass
    shutil.copytree(exp, parts)  # one part per session and table, as the sessions' syncs upload them
    compact_experiment(exp)  # as `mlt-kernel compact` leaves it
    for folder in (parts, exp):
        (folder / "bench.json").write_text(json.dumps({"runs": runs, "samples": samples}))
    return time.perf_counter() - started


def ensure(data: Path, runs: int, samples: int, rebuild: bool) -> dict[str, Path]:
    """The experiment of *runs* runs, by layout: ``merged`` and ``parts`` (written when missing)."""
    exps = {"merged": data / f"{runs}-runs", "parts": data / f"{runs}-runs-parts"}
    wanted = {"runs": runs, "samples": samples}
    markers = [exp / "bench.json" for exp in exps.values()]
    if rebuild or not all(m.exists() and json.loads(m.read_text()) == wanted for m in markers):
        print(f"writing the {runs:,}-run experiment ({runs * samples:,} samples)…", file=sys.stderr, flush=True)
        print(f"  done in {build(exps['merged'], runs, samples):.0f} s", file=sys.stderr, flush=True)
    return exps


def _objects(exp: Path) -> tuple[int, int]:
    """Files a push copies, and their bytes."""
    files = [p for p in exp.rglob("*") if p.is_file() and p.name != "bench.json"]
    return len(files), sum(p.stat().st_size for p in files)


# -- the store: moto behind a latency proxy -----------------------------------------------------


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that holds the first bytes of each request *delay_s* before forwarding them.

    A request's first bytes are the first the client sends on a connection, or
    the first it sends after response bytes came back on that connection.
    Responses are forwarded at once. ``requests`` counts the requests by kind
    (``LIST``, ``GET``, ``PUT``…), read from their request lines.
    """

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.requests: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, name="latency-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fresh = threading.Event()  # set: the client's next bytes begin a request
        fresh.set()
        back = threading.Thread(target=self._pump, args=(upstream, client, fresh, False), daemon=True)
        back.start()
        self._pump(client, upstream, fresh, True)
        back.join()
        client.close()
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket, fresh: threading.Event, request: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if request and fresh.is_set():
                    fresh.clear()
                    line = re.match(rb"([A-Z]+) (\S+) HTTP/", data)
                    if line:  # else a body after "100 Continue": a round trip too, no request
                        method, target = line.group(1).decode(), line.group(2)
                        kind = "LIST" if method == "GET" and b"list-type=" in target else method
                        with self._lock:
                            self.requests[kind] += 1
                    time.sleep(self.delay_s)
                elif not request:
                    fresh.set()
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def counted(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self.requests)

    def close(self) -> None:
        self._closed = True
        self._server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def store(latency_s: float) -> Iterator[tuple[LatencyProxy, int]]:
    """moto on 127.0.0.1, a latency proxy in front, the AWS_* environment pointing at the proxy."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    proxy = LatencyProxy(port, latency_s)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    try:
        yield proxy, port
    finally:
        proxy.close()
        server.stop()


# -- measurements -------------------------------------------------------------------------------


def median_s(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of *fn* after one warm-up call (``benchmarks/dashboard.py``'s ``timed``)."""
    return float(_generator().timed(fn, repeat))


@contextlib.contextmanager
def empty_cache() -> Iterator[Path]:
    """A fresh ``XDG_CACHE_HOME``: the mirror of any ``s3://`` experiment starts empty."""
    before = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="mlt-bench-cache-") as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        try:
            yield Path(cache)
        finally:
            if before is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = before


def cold_s(open_and_read: Callable[[], Any], repeat: int, proxy: LatencyProxy) -> tuple[float, dict[str, int]]:
    """Median seconds of *open_and_read* (returns what to close) with an empty mirror each time,
    and the requests of the last try."""
    times, requests = [], {}
    for _ in range(repeat):
        with empty_cache():
            before = proxy.counted()
            t0 = time.perf_counter()
            reader = open_and_read()
            times.append(time.perf_counter() - t0)
            requests = dict(proxy.counted() - before)
            reader.close()
    return statistics.median(times), requests


def measure(local: Path, url: str, proxy: LatencyProxy, cold_repeat: int, warm_repeat: int) -> dict[str, Any]:
    import mlt_kernel as mlt
    from mlt_dashboard.queries import Source
    from mlt_kernel.store.mirror import Mirror
    from mlt_kernel.store.objects import Bucket

    out: dict[str, Any] = {}

    def experiment(target: str | Path) -> Callable[[], Any]:
        def run() -> Any:
            e = mlt.Experiment(target)
            e.runs()
            return e

        return run

    def dashboard(target: str | Path) -> Callable[[], Any]:
        def run() -> Any:
            source = Source(target)
            source.runs()
            source.counts()
            return source

        return run

    for key, make in (("cold", experiment), ("dashboard", dashboard)):
        out[f"{key} local"], _ = cold_s(make(local), cold_repeat, proxy)
        out[f"{key} s3"], out[f"{key} requests"] = cold_s(make(url), cold_repeat, proxy)

    with empty_cache():
        readers = {"local": mlt.Experiment(local), "s3": mlt.Experiment(url)}
        try:
            n = {where: len(e.runs()) for where, e in readers.items()}
            assert n["local"] == n["s3"], n
            out["runs"] = n["local"]
            run_id = readers["local"].runs()["run_id"].iloc[n["local"] // 2]
            calls = warm_repeat + 1  # median_s's warm-up call, then the repeats
            for where, e in readers.items():
                e.refresh()
                before = proxy.counted()
                out[f"warm {where}"] = median_s(e.runs, warm_repeat)
                out[f"warm requests {where}"] = {k: v / calls for k, v in (proxy.counted() - before).items()}
                before = proxy.counted()
                out[f"timeline {where}"] = median_s(lambda e=e: e.samples(run=run_id), warm_repeat)
                out[f"timeline requests {where}"] = {k: v / calls for k, v in (proxy.counted() - before).items()}
            out["timeline rows"] = len(readers["s3"].samples(run=run_id))
        finally:
            for e in readers.values():
                e.close()

        bucket = Bucket(parse_remote(url))
        mirror = Mirror(url, bucket=bucket)
        mirror.refresh()
        bucket.requests.clear()
        out["refresh nothing new"] = median_s(mirror.refresh, warm_repeat)
        out["refresh nothing new requests"] = {k: v / (warm_repeat + 1) for k, v in bucket.requests.items()}
        part = _new_part()
        bucket.put(f"{layout.TABLES}/runs/{part.name}", part)
        bucket.requests.clear()
        before = proxy.counted()
        t0 = time.perf_counter()
        changed = mirror.refresh()
        out["refresh one new part"] = time.perf_counter() - t0
        out["refresh one new part requests"] = dict(bucket.requests)
        out["refresh one new part kinds"] = dict(proxy.counted() - before)
        assert changed and (mirror.folder / layout.TABLES / "runs" / part.name).is_file()
        shutil.rmtree(part.parent.parent.parent)
    return out


def _new_part() -> Path:
    """One new ``runs`` part, as a kernel session's sync uploads it (a one-run session, written by the real writer)."""
    gen = _generator()
    scratch = Path(tempfile.mkdtemp(prefix="mlt-bench-part-"))
    layout.ensure_layout(scratch)
    gen._session((scratch, 9999, 1, 10, 9999))
    return next((scratch / layout.TABLES / "runs").glob("*.parquet"))


def round_trip(proxy_port: int, moto_port: int) -> tuple[float, float]:
    """Median seconds of one LIST through the proxy and straight to moto."""
    from mlt_kernel.store.objects import Bucket

    times = []
    for port in (proxy_port, moto_port):
        os.environ["AWS_ENDPOINT_URL"], before = f"http://127.0.0.1:{port}", os.environ["AWS_ENDPOINT_URL"]
        try:
            bucket = Bucket(parse_remote(f"s3://{BUCKET}/ping"))
            times.append(median_s(bucket.list, 15))
        finally:
            os.environ["AWS_ENDPOINT_URL"] = before
    return times[0], times[1]


# -- report ---------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def _requests(counts: dict[str, float], per_call: bool = False) -> str:
    text = " + ".join(f"{v:.3g} {k}" for k, v in sorted(counts.items()))
    if not text:
        return "no request"
    return f"{text} a call" if per_call else text


def _row(width: int, label: str, local: float | None, remote: float, note: str) -> None:
    loc = f"{_ms(local)}" if local is not None else "—"
    ratio = f"x{remote / local:.2f}" if local else ""
    print(f"  {label:<{width - 2}} {loc:>9} {_ms(remote):>9} {ratio:>7}  {note}")


def _check(verdicts: list[str], where: str, what: str, value: float, limit: float, ratio: bool = False) -> str:
    """The target's verdict for the table; the line with the margin goes to *verdicts*."""
    ok = value <= limit
    if ratio:
        how = f"x{value:.2f} vs <= x{limit:g}"
        by = f"{(value / limit - 1) * 100:.0f}% over" if not ok else f"{(1 - value / limit) * 100:.0f}% margin"
    else:
        how = f"{value:.2f} s vs <= {limit:g} s"
        by = f"{value - limit:.2f} s over" if not ok else f"{limit - value:.2f} s margin"
    verdicts.append(f"{where}, {what}: {'met' if ok else 'MISSED'} ({how}; {by})")
    return f"<= {limit:g}{'x local' if ratio else ' s'}: {'met' if ok else 'MISSED'}"


LAYOUTS = {
    "merged": "merged (as `mlt-kernel compact` leaves it)",
    "parts": "per-session parts (as sessions upload them)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="200,5000", help="experiment sizes, comma-separated (default 200,5000)")
    parser.add_argument("--quick", action="store_true", help="200 runs only")
    parser.add_argument(
        "--layouts", default="merged,parts", help="merged and/or parts (per-session parts), comma-separated"
    )
    parser.add_argument("--samples-per-run", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=25.0, help="added to each request (default 25)")
    parser.add_argument("--cold", type=int, default=3, help="cold tries per measurement (median)")
    parser.add_argument("--repeat", type=int, default=15, help="warm repeats (median)")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mlt-bench-object-storage",
        help="where the experiments are written and kept",
    )
    parser.add_argument("--rebuild", action="store_true", help="write the experiments again")
    args = parser.parse_args(argv)
    sizes = [200] if args.quick else [int(x.strip().replace("_", "")) for x in args.runs.split(",") if x.strip()]
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if not sizes or not layouts or set(layouts) - set(LAYOUTS):
        parser.error(f"--runs needs sizes and --layouts some of {', '.join(LAYOUTS)}")
    started = time.perf_counter()
    exps = {runs: ensure(args.data, runs, args.samples_per_run, args.rebuild) for runs in sizes}

    # Imports and boto3's first load of its S3 model: a one-off per process, kept out of the cold figures.
    t0 = time.perf_counter()
    import boto3  # noqa: F401

    import mlt_dashboard.queries  # noqa: F401
    import mlt_kernel.read.experiment  # noqa: F401

    imports = time.perf_counter() - t0

    results: dict[tuple[int, str], dict[str, Any]] = {}
    with empty_cache(), store(args.latency_ms / 1e3) as (proxy, moto_port):
        from mlt_kernel.store.objects import Bucket
        from mlt_kernel.store.remote import push

        t0 = time.perf_counter()
        Bucket(parse_remote(f"s3://{BUCKET}/ping")).list()
        first_client = time.perf_counter() - t0
        rtt_proxy, rtt_direct = round_trip(proxy.port, moto_port)
        for runs, by_layout in exps.items():
            for name in layouts:
                exp = by_layout[name]
                url = f"s3://{BUCKET}/team/{exp.name}"
                t0 = time.perf_counter()
                sent = push(exp, url)
                pushed = time.perf_counter() - t0
                print(f"{exp.name}: pushed {sent} in {pushed:.1f} s; measuring…", file=sys.stderr, flush=True)
                r = results[runs, name] = measure(exp, url, proxy, args.cold, args.repeat)
                r["objects"], r["push"] = _objects(exp), pushed
        proxied = proxy.counted()

    print(
        f"Object storage vs local disk: the same experiment, the same queries, in one run. The bucket: moto on "
        f"127.0.0.1 behind a proxy adding {args.latency_ms:g} ms to each request (one LIST: {_ms(rtt_proxy)} ms "
        f"through it, {_ms(rtt_direct)} ms straight to moto; {sum(proxied.values()):,} requests in all)."
    )
    headline = []
    for (runs, name), r in results.items():
        headline.append(
            f"{runs:,} runs ({name}): warm summary {_ms(r['warm s3'])} vs {_ms(r['warm local'])} ms "
            f"(x{r['warm s3'] / r['warm local']:.2f}, {(r['warm s3'] - r['warm local']) * 1e3:+.1f} ms), "
            f"cold {_ms(r['cold s3'])} vs {_ms(r['cold local'])} ms (x{r['cold s3'] / r['cold local']:.2f})"
        )
    print("Like for like, S3 vs local disk:")
    for line in headline:
        print(f"  {line}")
    print()
    width = 46
    print(f"{'':<{width}} {'local ms':>9} {'S3 ms':>9} {'ratio':>7}  S3 requests; target")
    verdicts: list[str] = []
    for (runs, name), r in results.items():
        files, size = r["objects"]
        print(
            f"{runs:,} runs, {r['runs']:,} read ({runs * args.samples_per_run:,} samples), {LAYOUTS[name]}: "
            f"{files} objects, {size / 2**20:.1f} MiB, pushed in {r['push']:.1f} s"
        )

        where = f"{runs:,} runs, {name}"
        check = functools.partial(_check, verdicts, where)
        row = functools.partial(_row, width)
        row(
            "compare all runs, warm (median)",
            r["warm local"],
            r["warm s3"],
            f"{_requests(r['warm requests s3'], True)}; {check('warm summary', r['warm s3'] / r['warm local'], 2.0, True)}",
        )
        cold_note = _requests(r["cold requests"])
        if runs == 200:
            cold_note += f"; {check('cold summary', r['cold s3'], 1.5)}"
        row("compare all runs, cold (empty mirror)", r["cold local"], r["cold s3"], cold_note)
        row(
            f"one run's timeline, warm ({r['timeline rows']} rows)",
            r["timeline local"],
            r["timeline s3"],
            _requests(r["timeline requests s3"], True),
        )
        row(
            "dashboard: Source + runs + counts, cold",
            r["dashboard local"],
            r["dashboard s3"],
            f"{_requests(r['dashboard requests'])}; "
            f"{check('first page with data (Source + runs + counts)', r['dashboard s3'], 5.0)}",
        )
        row(
            "mirror refresh, nothing new (median)",
            None,
            r["refresh nothing new"],
            f"Bucket.requests: {_requests(r['refresh nothing new requests'])} (a LIST)",
        )
        row(
            "mirror refresh, one new part",
            None,
            r["refresh one new part"],
            f"Bucket.requests: {_requests(r['refresh one new part requests'])} "
            f"({_requests(r['refresh one new part kinds'])})",
        )
    print()
    print("Targets:")
    for line in verdicts:
        print(f"  {line}")
    print()
    print(
        f"Not in the cold figures: importing the readers and boto3 ({imports:.2f} s) and boto3's first client "
        f"({first_client:.2f} s, with its first LIST), once per process. Cold: medians of {args.cold} tries, each "
        f"with an empty XDG_CACHE_HOME; the local cold reads files the OS has cached. The dashboard figure is its "
        f"data only (server start and rendering: benchmarks/dashboard.py). Requests as the proxy saw them (a LIST "
        f"is a GET of the bucket; Bucket.requests counts it as GET). Wall time: {time.perf_counter() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
