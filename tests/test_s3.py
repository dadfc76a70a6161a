"""Experiments on S3-compatible storage, against a real S3 protocol server (moto, in-process, on 127.0.0.1)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import mlt_kernel as mlt
from mlt_kernel.core import layout
from mlt_kernel.core.locations import parse_remote
from mlt_kernel.store.mirror import Mirror
from mlt_kernel.store.objects import Bucket

#: How long a test waits for the bucket to show what a kernel wrote (the sync runs every second here).
VISIBLE_S = 30.0


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:  # a fixed port: a test stops the server and starts it again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MLT_SYNC_INTERVAL_S": "1",
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"mlt-{secrets.token_hex(4)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield SimpleNamespace(url=f"s3://{bucket}/team/churn", bucket=bucket, port=port, server=server)
    server.stop()


def _wait(check: Any, what: str, timeout: float = VISIBLE_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (FileNotFoundError, KeyError, IndexError):
            value = None
        if value is not None and value is not False and not (isinstance(value, (str, list)) and not value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


NOTEBOOK = [
    "import mlt_kernel as mlt\nimport numpy as np",
    "# mlt: record name=logreg C=1.0\nmlt.log_metric('loss', 0.5, step=1)\nmlt.log_metric('loss', 0.25, step=2)\n"
    "y = np.array([0, 1, 1, 0, 1, 0]); p = np.array([0.2, 0.8, 0.6, 0.3, 0.9, 0.4])\n"
    "mlt.log_predictions(y, (p > 0.5).astype(int), y_proba=np.c_[1 - p, p])",
    "mlt.note('The **baseline** is good enough.')",
    "for depth in [2, 4]:\n    with mlt.run('tree', depth=depth):\n        mlt.log_metric('acc', depth / 10)",
]


def _run_notebook(start_kernel: Any, exp_path: str) -> None:
    k = start_kernel()
    assert k.run(f"EXP_PATH = {exp_path!r}").status == "ok"
    for code in NOTEBOOK:
        reply = k.run(code)
        assert reply.status == "ok", reply.content
    k.shutdown()


def _view(e: mlt.Experiment) -> dict[str, Any]:
    runs = e.runs().sort_values(["name", "started_at"])
    metrics = e.metrics()
    return {
        "runs": [(r.name, r.status, r.params, int(r.first_cell_seq), int(r.last_cell_seq)) for r in runs.itertuples()],
        "metrics": sorted(
            (str(r.name), -1 if pd.isna(r.step) else int(r.step), round(float(r.value), 9))
            for r in metrics.itertuples()
        ),
        # The first cell sets EXP_PATH: the one line that differs.
        "cells": [
            (int(r.cell_seq), r.code if r.cell_seq > 1 else "EXP_PATH", r.status) for r in e.cells().itertuples()
        ],
        "notes": list(e.notes()["markdown"]),
        "sessions": list(e.sessions()["status"]),
        "confusion": [e.confusion_matrix(r).values.tolist() for r in runs[runs["name"] == "logreg"]["run_id"]],
    }


def test_a_notebook_on_s3_reads_like_the_same_notebook_on_disk(start_kernel, s3, tmp_path):
    _run_notebook(start_kernel, s3.url)
    _run_notebook(start_kernel, str(tmp_path / "local"))
    local = _view(mlt.Experiment(tmp_path / "local"))

    def remote_view() -> dict[str, Any] | None:
        with mlt.Experiment(s3.url) as e:
            view = _view(e)
        return view if view["sessions"] == ["ended"] and len(view["runs"]) == 3 else None

    remote = _wait(remote_view, "the session's end in the bucket")
    assert remote == local
    # Read in another process, as a teammate would.
    code = f"import mlt_kernel as mlt; print(len(mlt.Experiment({s3.url!r}).cells()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(local["cells"])
    # The kernel never loaded boto3: uploads are another process's.
    objects = Bucket(parse_remote(s3.url)).list()
    assert layout.MARKER in objects and any(k.startswith("tables/runs/s-") for k in objects)


def test_a_refresh_with_nothing_new_costs_one_list_and_no_get(start_kernel, s3):
    _run_notebook(start_kernel, s3.url)
    _wait(lambda: mlt.Experiment(s3.url).sessions()["status"].tolist() == ["ended"], "the session in the bucket")
    bucket = Bucket(parse_remote(s3.url))
    mirror = Mirror(s3.url, bucket=bucket)
    mirror.refresh()
    bucket.requests.clear()
    assert mirror.refresh() is False
    assert dict(bucket.requests) == {"GET": 1}  # the LIST (a GET of the bucket); no object fetched again


def test_a_killed_kernel_reads_killed_from_the_bucket(start_kernel, s3):
    k = start_kernel()
    k.run(f"EXP_PATH = {s3.url!r}\nimport mlt_kernel as mlt")
    k.run("# mlt: record start name=long\nx = 1")
    k.kc.execute("import time; time.sleep(60)")
    time.sleep(1.0)
    os.kill(k.pid, signal.SIGKILL)
    _wait(lambda: mlt.Experiment(s3.url).runs()["status"].tolist() == ["killed"], "the killed run in the bucket")
    e = mlt.Experiment(s3.url)
    assert e.sessions()["status"].tolist() == ["killed"]
    assert e.cells()["status"].tolist()[-1] == "killed"


def test_an_unreachable_bucket_slows_no_cell_and_loses_nothing(start_kernel, s3, tmp_path):
    k = start_kernel()
    k.run(f"EXP_PATH = {s3.url!r}\nimport mlt_kernel as mlt")
    k.run("# mlt: record name=before\nmlt.log_metric('acc', 0.1)")
    _wait(lambda: "before" in mlt.Experiment(s3.url).runs()["name"].tolist(), "the first run in the bucket")
    s3.server.stop()
    started = time.monotonic()
    for i in range(20):
        assert k.run(f"# mlt: record name=offline{i}\nmlt.log_metric('acc', {i})").status == "ok"
    per_cell = (time.monotonic() - started) / 20
    assert per_cell < 1.0  # cells do not wait for the bucket (a request would take seconds to fail)
    # The sync fails meanwhile, and a later cell says so, once.
    said = _wait(lambda: (text := k.run("x = 1").stderr) and "cannot upload" in text and text, "the one-line problem")
    assert "uploaded when it can" in said and said.count("\n") == 1
    assert "cannot upload" not in k.run("x = 2").stderr
    s3.server.start()  # same port, same buckets: moto keeps them in this process
    k.shutdown()
    runs = _wait(
        lambda: (names := mlt.Experiment(s3.url).runs()["name"].tolist()) and len(names) == 21 and names,
        "every run once the bucket is back",
        timeout=60,
    )
    assert sorted(runs) == sorted(["before", *(f"offline{i}" for i in range(20))])


def test_two_kernels_write_one_experiment_while_a_reader_reads(start_kernel, s3):
    import threading

    kernels = [start_kernel(), start_kernel()]
    for k in kernels:
        k.run(f"EXP_PATH = {s3.url!r}\nimport mlt_kernel as mlt")
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                with mlt.Experiment(s3.url) as e:
                    seen.append(len(e.cells()))
            except FileNotFoundError:
                pass  # nothing uploaded yet
            except BaseException as exc:
                errors.append(exc)
            time.sleep(0.2)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(8):
        for n, k in enumerate(kernels):
            assert k.run(f"# mlt: record name=k{n}_{i}\nmlt.log_metric('acc', {i})").status == "ok"
    for k in kernels:
        k.shutdown()
    cells = _wait(
        lambda: (c := mlt.Experiment(s3.url).cells()) is not None and len(c) == 18 and c, "both sessions' cells"
    )
    stop.set()
    thread.join()
    assert errors == []
    assert seen == sorted(seen)  # a reader never loses a cell it saw
    assert cells.groupby("session_id").size().tolist() == [9, 9]
    assert not cells.duplicated(["session_id", "cell_seq"]).any()
    assert len(mlt.Experiment(s3.url).runs()) == 16


def test_a_spool_left_by_a_dead_machine_is_uploaded_by_the_next_session(start_kernel, s3):
    import psutil

    k = start_kernel()
    k.run(f"EXP_PATH = {s3.url!r}\nimport mlt_kernel as mlt")
    k.run("# mlt: record start name=lost\nx = 1")
    # The machine dies: the kernel, its watcher and its sync, all at once, with nothing uploaded since.
    family = psutil.Process(k.pid).children(recursive=True)
    for proc in [*family, psutil.Process(k.pid)]:
        proc.kill()
    psutil.wait_procs([*family], timeout=10)
    k2 = start_kernel()
    k2.run(f"EXP_PATH = {s3.url!r}")
    k2.run("y = 2")
    k2.shutdown()
    sessions = _wait(
        lambda: (s := mlt.Experiment(s3.url).sessions()) is not None and len(s) == 2 and s, "both sessions"
    )
    statuses = dict(zip(sessions["kernel_pid"], sessions["status"], strict=True))
    assert statuses[k.pid] in ("killed", "running") and "lost" in mlt.Experiment(s3.url).runs()["name"].tolist()


def test_push_pull_and_compact_on_the_bucket(start_kernel, s3, tmp_path):
    from mlt_kernel.cli import main as cli

    local = tmp_path / "local"
    _run_notebook(start_kernel, str(local))
    before = _view(mlt.Experiment(local))
    url = f"s3://{s3.bucket}/pushed"
    assert cli(["push", "-q", str(local), url]) == 0
    assert _view(mlt.Experiment(url)) == before
    bucket = Bucket(parse_remote(url))
    n_objects = len(bucket.list())
    assert cli(["push", "-q", str(local), url]) == 0  # again: nothing new to send
    assert len(bucket.list()) == n_objects
    _run_notebook(start_kernel, url)  # a second session adds small parts
    _wait(lambda: mlt.Experiment(url).sessions()["status"].tolist().count("ended") == 2, "the second session")
    parts = [k for k in bucket.list() if k.startswith("tables/")]
    view = _view(mlt.Experiment(url))
    assert cli(["compact", url]) == 0
    after = [k for k in bucket.list() if k.startswith("tables/")]
    assert len(after) < len(parts) and not any(k.startswith("_locks/") for k in bucket.list())
    assert _view(mlt.Experiment(url)) == view  # the same rows, in fewer parts
    bucket.put("_locks/compact.json", b'{"until": 9999999999}')
    assert cli(["compact", url]) == 2  # another merger holds the lock: a one-line refusal
    pulled = tmp_path / "pulled"
    assert cli(["pull", url, str(pulled)]) == 0
    assert _view(mlt.Experiment(pulled)) == view


@pytest.mark.browser
def test_dashboard_and_export_of_an_s3_experiment(start_kernel, s3, tmp_path, browser):
    from test_dashboard import CLI, Dashboard, Watched

    _run_notebook(start_kernel, s3.url)
    _wait(lambda: mlt.Experiment(s3.url).sessions()["status"].tolist() == ["ended"], "the session in the bucket")
    report = tmp_path / "report.html"
    proc = subprocess.run([*CLI, s3.url, "--export", str(report)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    html = report.read_text()
    assert html.count("logreg") >= 2 and "tree" in html  # the summary table and the run's section
    dash = Dashboard(s3.url)  # type: ignore[arg-type]
    try:
        ctx = browser.new_context()
        page = ctx.new_page()
        watched = Watched(
            page, lambda url: url.startswith((dash.base, f"ws://127.0.0.1:{dash.port}/", "data:", "blob:"))
        )
        page.goto(dash.page_url("summary"))
        page.get_by_text("logreg", exact=True).first.wait_for(timeout=30_000)
        assert s3.url in page.locator('[data-testid="experiment"]').inner_text()
        page.goto(dash.page_url("documents"))
        page.get_by_text("shown here as they are in the bucket").first.wait_for(timeout=30_000)
        assert page.get_by_text("Create document").count() == 0  # no edit that would never reach the bucket
        ctx.close()
        watched.check()
    finally:
        dash.stop()
    bad = subprocess.run(
        [*CLI, f"s3://{s3.bucket}/nothing-here", "--export", str(report)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "holds no MLTrack experiment" in bad.stderr


def test_the_mirror_takes_only_keys_of_the_layout_and_puts_are_create_only(s3, tmp_path):
    bucket = Bucket(parse_remote(s3.url))
    assert bucket.put("tables/runs/s-x.v1.parquet", b"one") is True
    assert bucket.put("tables/runs/s-x.v1.parquet", b"two") is False  # a name is never overwritten
    assert bucket.read("tables/runs/s-x.v1.parquet") == b"one"
    for hostile in ("tables/runs/../../../evil.parquet", "plots/../../evil.png", "journals/x.jsonl", ".hidden", "a/b"):
        bucket.put(hostile, b"x")
    bucket.put(layout.MARKER, b"{}")
    mirror = Mirror(s3.url, bucket=bucket, folder=tmp_path / "m")
    mirror.refresh()
    assert sorted(mirror.known()) == [layout.MARKER, "tables/runs/s-x.v1.parquet"]
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))
    bucket.delete("tables/runs/s-x.v1.parquet")  # a merge replaced it: the mirror lets it go too
    assert mirror.refresh() is True and not (tmp_path / "m" / "tables" / "runs" / "s-x.v1.parquet").exists()


def test_hostile_objects_neither_stop_a_reader_nor_make_compact_delete_real_parts(start_kernel, s3, tmp_path):
    import json as _json

    import pyarrow.parquet as pq

    from mlt_kernel.cli import main as cli
    from mlt_kernel.store.parquet import REPLACED_KEY, REPLACES_KEY

    _run_notebook(start_kernel, s3.url)
    _wait(lambda: mlt.Experiment(s3.url).sessions()["status"].tolist() == ["ended"], "the session in the bucket")
    bucket = Bucket(parse_remote(s3.url))
    real = sorted(k for k in bucket.list() if k.startswith("tables/metrics/"))
    rows = _view(mlt.Experiment(s3.url))["metrics"]
    # A teammate's forged merged file claims to replace the real metrics part, with a made-up row.
    mirror = Mirror(s3.url, bucket=bucket, folder=tmp_path / "m")
    mirror.refresh()
    table = pq.read_table(tmp_path / "m" / real[0]).slice(0, 1)
    name = real[0].rsplit("/", 1)[1]
    claim = [{"file": name, "rows": pq.read_metadata(tmp_path / "m" / real[0]).num_rows, "writer": name[2:-11]}]
    forged = tmp_path / "forged.parquet"
    pq.write_table(
        table.replace_schema_metadata(
            {REPLACES_KEY: _json.dumps([name]).encode(), REPLACED_KEY: _json.dumps(claim).encode()}
        ),
        forged,
    )
    bucket.put("tables/metrics/m-forged.v1.parquet", forged)
    # And keys that once stopped every reader: too long, a NUL, a control character.
    for key in ("plots/" + "a" * 250 + ".png", "plots/a\x00b.png", "plots/a\x07b.png"):
        bucket.put(key, b"x")
    assert len(mlt.Experiment(s3.url).cells()) == len(NOTEBOOK) + 1  # the reader still reads
    assert cli(["compact", s3.url]) == 0
    after = _view(mlt.Experiment(s3.url))["metrics"]
    assert all(row in after for row in rows)  # a forged claim hides or deletes no real row


def test_push_never_uploads_what_a_link_points_to(s3, tmp_path):
    from mlt_kernel.cli import main as cli

    local = layout.ensure_layout(tmp_path / "shared")
    (local / layout.MARKER).unlink()
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key=SECRET")
    (local / layout.MARKER).symlink_to(secret)
    (local / layout.PLOTS / "roc.png").symlink_to(secret)
    url = f"s3://{s3.bucket}/linked"
    assert cli(["push", "-q", str(local), url]) == 0
    assert Bucket(parse_remote(url)).list() == {}
