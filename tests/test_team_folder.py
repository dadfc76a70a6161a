"""Several kernels writing one experiment folder at the same time lose nothing."""

from __future__ import annotations

import mlt_kernel as mlt

CELLS = 15


def test_four_kernels_write_one_experiment_at_once(start_kernel, exp):
    kernels = [start_kernel() for _ in range(4)]
    for i, k in enumerate(kernels):
        k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt\nmlt.start('run{i}', kernel={i})")
    # Interleave: every kernel has a request in flight at once.
    for step in range(CELLS):
        ids = [k.kc.execute(f"mlt.log_metric('loss', {step} / 10, step={step})\nx = [0] * 10000") for k in kernels]
        for k, msg_id in zip(kernels, ids, strict=True):
            while True:
                reply = k.kc.get_shell_msg(timeout=60)
                if reply["parent_header"].get("msg_id") == msg_id:
                    assert reply["content"]["status"] == "ok"
                    break
    for k in kernels:
        k.run("mlt.stop()")
    live = mlt.Experiment(exp)
    assert len(live.cells()) == 4 * (CELLS + 2)
    for k in kernels:
        k.shutdown()
    e = mlt.Experiment(exp)
    assert len(e.sessions()) == 4 and set(e.sessions()["status"]) == {"ended"}
    runs = e.runs()
    assert sorted(runs["name"]) == ["run0", "run1", "run2", "run3"] and set(runs["status"]) == {"finished"}
    metrics = e.metrics()
    assert len(metrics) == 4 * CELLS
    for run_id in runs["run_id"]:  # noqa: B007 - the query names it (@run_id)
        assert sorted(metrics.query("run_id == @run_id")["step"]) == list(range(CELLS))
    assert len(e.cells()) == 4 * (CELLS + 2)
    assert not list((exp / "journals").iterdir())
