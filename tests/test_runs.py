"""Runs from cell comments and from code, in a real kernel."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import mlt_kernel as mlt


@pytest.fixture
def kernel(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt")
    return k


def test_a_tagged_cell_is_a_run_with_typed_params(kernel, exp):
    assert (
        kernel.run(
            "# mlt: record name=random_forest n_estimators=300 lr=0.1 deep=true tag='7'\nimport time; time.sleep(0.1)"
        ).status
        == "ok"
    )
    runs = mlt.Experiment(exp).runs()
    (run,) = runs.to_dict("records")
    assert run["name"] == "random_forest" and run["status"] == "finished"
    assert run["params"] == {"n_estimators": 300, "lr": 0.1, "deep": True, "tag": "7"}
    assert run["wall_s"] >= 0.1 and run["ended_at"] > run["started_at"]
    assert run["peak_rss_bytes"] > 0
    cells = mlt.Experiment(exp).cells(run="random_forest")
    assert list(cells["execution_count"]) == [2]


def test_a_run_spanning_cells(kernel, exp):
    kernel.run("# mlt: record start name=mlp lr=0.001\nx = 1")
    kernel.run("y = bytearray(50 * 2**20)")
    mid = mlt.Experiment(exp).runs()
    assert mid["status"].tolist() == ["running"]
    kernel.run("# mlt: record stop\nz = 3")
    kernel.run("after = 1")
    e = mlt.Experiment(exp)
    (run,) = e.runs().to_dict("records")
    assert run["status"] == "finished" and run["params"] == {"lr": 0.001}
    assert (run["first_cell_seq"], run["last_cell_seq"]) == (2, 4)
    assert run["peak_rss_bytes"] >= 50 * 2**20
    assert e.cells()["run_name"].fillna("-").tolist()[1:] == ["mlp", "mlp", "mlp", "-"]


def test_runs_in_code_and_params(kernel, exp):
    assert kernel.run("rid = mlt.start('sgd', alpha=0.01)\nmlt.log_params(epochs=5)").status == "ok"
    assert (
        kernel.run("mlt.log_metric('loss', 0.5, step=1)\nmlt.log_metrics({'loss': 0.25, 'acc': 0.9}, step=2)").status
        == "ok"
    )
    assert kernel.run("mlt.stop()").status == "ok"
    e = mlt.Experiment(exp)
    (run,) = e.runs().to_dict("records")
    assert run["params"] == {"alpha": 0.01, "epochs": 5} and run["status"] == "finished"
    metrics = e.metrics("sgd")
    assert metrics[["name", "step", "value"]].values.tolist() == [["loss", 1, 0.5], ["loss", 2, 0.25], ["acc", 2, 0.9]]


def test_nested_start_and_stray_stop_are_clear_errors(kernel, exp):
    kernel.run("# mlt: record start name=outer")
    nested = kernel.run("# mlt: record name=inner\nran = True")
    assert nested.content["ename"] == "RunError"
    assert "'outer' is still open" in nested.content["evalue"]
    assert kernel.run("print('ran' in globals())").stdout.strip() == "False"
    kernel.run("# mlt: record stop")
    stray = kernel.run("# mlt: record stop")
    assert stray.content["ename"] == "RunError" and "no run is open" in stray.content["evalue"]
    assert mlt.Experiment(exp).runs()["name"].tolist() == ["outer"]
    assert kernel.run("mlt.stop()").content["ename"] == "RunError"


def test_logging_outside_a_run_is_an_error(kernel, exp):
    reply = kernel.run("mlt.log_metric('loss', 1.0)")
    assert reply.content["ename"] == "RunError"
    assert "no run is open" in reply.content["evalue"]
    bad = kernel.run("# mlt: record name=r\nmlt.log_metric('loss', float('nan'))")
    assert bad.content["ename"] == "ValueError" and "not finite" in bad.content["evalue"]
    later = kernel.run("mlt.log_metric('late', 2.0, run='r')")
    assert later.status == "ok"
    assert mlt.Experiment(exp).metrics("r")["name"].tolist() == ["late"]


def test_a_failing_run_cell_and_an_open_run_at_shutdown(start_kernel, exp):
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}")
    k.run("# mlt: record name=broken\n1/0")
    k.run("# mlt: record start name=left_open")
    k.shutdown()
    runs = mlt.Experiment(exp).runs().set_index("name")
    assert runs.loc["broken", "status"] == "error"
    assert runs.loc["left_open", "status"] == "finished"


def test_names_may_repeat_across_sessions(start_kernel, exp):
    for _ in range(2):
        k = start_kernel()
        k.run(f"EXP_PATH = {str(exp)!r}")
        k.run("# mlt: record name=rf\nx = 1")
        k.shutdown()
    e = mlt.Experiment(exp)
    runs = e.runs()
    assert runs["name"].tolist() == ["rf", "rf"] and runs["session_id"].nunique() == 2
    with pytest.raises(mlt.UnknownRunError, match="2 runs are named 'rf'; pass one run_id"):
        e.resolve_run("rf")
    assert e.resolve_run(runs["run_id"][1])["session_id"] == runs["session_id"][1]


def test_a_run_lands_only_in_the_folder_it_ran_in(start_kernel, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    k = start_kernel()
    k.run(f"EXP_PATH = {str(first)!r}")
    k.run("# mlt: record name=in_first\nx = 1")
    k.run(f"EXP_PATH = {str(second)!r}")
    k.run("# mlt: record name=in_second\ny = 2")
    assert mlt.Experiment(first).runs()["name"].tolist() == ["in_first"]
    assert mlt.Experiment(second).runs()["name"].tolist() == ["in_second"]


def test_a_failed_start_leaves_no_open_run(kernel, exp):
    bad = kernel.run("import numpy as np\nmlt.start('x', weights=np.arange(3))")
    assert bad.content["ename"] == "ValueError" and "'weights'" in bad.content["evalue"]
    assert kernel.run("print(mlt.current_run())").stdout.strip() == "None"
    assert kernel.run("# mlt: record name=after\nz = 1").status == "ok"
    assert mlt.Experiment(exp).runs()["name"].tolist() == ["after"]


def test_a_trailing_backslash_is_a_directive_error(kernel):
    reply = kernel.run("# mlt: record name=x a=foo\\\nran = True")
    assert reply.content["ename"] == "DirectiveError"
    assert len(reply.of_type("error")[0]["traceback"]) == 1


def test_lineage_is_the_order_the_cells_ran_in(kernel, exp):
    # Cells run out of order, as in a notebook: the second sets depth, the first sets it back.
    kernel.run("depth = 3")
    kernel.run("depth = 8")
    kernel.run("# mlt: skip\nunrecorded = 1")
    kernel.run("1/0")
    kernel.run("# mlt: record name=forest\nscore = depth * 10")
    kernel.run("after = 1")  # after the run: not part of its lineage
    lineage = mlt.Experiment(exp).lineage("forest")
    assert lineage["code"].tolist() == [
        f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt",
        "depth = 3",
        "depth = 8",
        "1/0",
        "# mlt: record name=forest\nscore = depth * 10",
    ]
    assert lineage["execution_count"].tolist() == [1, 2, 3, 5, 6]  # [4] was skipped: the gap shows it
    assert lineage["status"].tolist() == ["ok", "ok", "ok", "error", "ok"]
    assert lineage["error_name"].iloc[3] == "ZeroDivisionError"
    with pytest.raises(mlt.UnknownRunError):
        mlt.Experiment(exp).lineage("no-such-run")


def test_a_replay_reproduces_the_run(kernel, exp, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    from mlt_kernel.cli import main

    # A notebook run out of order: cells 1, 3, 2, 4, where 3 and 2 set the same hyperparameter.
    cell = {
        1: "import math",
        2: "depth = 5",
        3: "depth = 12",
        4: "# mlt: record name=forest\nscore = 1 - 1 / (depth + math.pi)\nmlt.log_metric('score', score)",
    }
    for n in (1, 3, 2):
        kernel.run(cell[n])
    kernel.run("undefined_name")  # raised: kept in the replay, commented out
    kernel.run("# mlt: skip\nx = 1")
    kernel.run(cell[4])
    original = mlt.Experiment(exp).metrics(run="forest")["value"].tolist()
    assert original == [1 - 1 / (5 + 3.141592653589793)]

    target = tmp_path / "replayed"
    out = tmp_path / "forest.ipynb"
    assert main(["replay", str(exp), "forest", "-o", str(out), "--exp-path", str(target)]) == 0
    nb = nbformat.read(out, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0] == f"EXP_PATH = {str(target)!r}\nimport mlt_kernel as mlt"
    assert code[1:4] == [cell[1], cell[3], cell[2]]
    assert code[4].startswith("# MLTrack replay: this cell raised NameError when it ran")
    assert code[4].splitlines()[1] == "# undefined_name"
    notes = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert notes[0].startswith("# Replay of run `forest`") and "Cells [6] ran here but were not recorded" in notes[1]

    NotebookClient(nb, kernel_name="mltrack", timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert mlt.Experiment(target).metrics(run="forest")["value"].tolist() == original  # the same run again

    py = tmp_path / "forest.py"
    assert main(["replay", str(exp), "forest", "-o", str(py)]) == 0
    assert py.read_text().startswith("# %% [markdown]\n# # Replay of run `forest`")
    assert main(["replay", str(exp), "no-such-run", "-o", str(out)]) == 2
    assert main(["replay", str(exp), "forest", "-o", str(tmp_path / "forest.txt")]) == 2


# -- runs from code: loops, blocks, children ---------------------------------------------------

MiB = 2**20


def test_a_sweep_in_one_cell_records_each_run(kernel, exp):
    sweep = (
        "for C in [0.1, 1.0, 10.0]:\n"
        "    run = mlt.start(f'lr_C{C}', C=C)\n"
        "    mlt.log_metric('acc', C / 10)\n"
        "    mlt.stop()\n"
        "for depth in [2, 4]:\n"
        "    with mlt.run('tree', depth=depth) as r:\n"
        "        mlt.log_metrics({'acc': depth / 10})\n"
        "print(type(run).__name__, str(run) == run.id, r.name)"
    )
    reply = kernel.run(sweep)
    assert reply.status == "ok", reply.content
    assert reply.stdout.split() == ["Run", "True", "tree"]
    e = mlt.Experiment(exp)
    runs = e.runs()
    assert runs["name"].tolist() == ["lr_C0.1", "lr_C1.0", "lr_C10.0", "tree", "tree"]
    assert runs["status"].tolist() == ["finished"] * 5
    assert list(runs["params"]) == [{"C": 0.1}, {"C": 1.0}, {"C": 10.0}, {"depth": 2}, {"depth": 4}]
    assert runs["acc"].tolist() == pytest.approx([0.01, 0.1, 1.0, 0.2, 0.4])
    assert runs["parent_run_id"].isna().all()
    assert (runs["first_cell_seq"] == 2).all() and (runs["last_cell_seq"] == 2).all()
    for run_id in runs["run_id"]:  # each run's cells: the one cell it ran in
        assert e.cells(run=run_id)["cell_seq"].tolist() == [2]
    assert e.lineage(runs["run_id"].iloc[2])["cell_seq"].tolist() == [1, 2]


def test_runs_in_one_cell_get_their_own_exact_peak(kernel, exp):
    code = (
        "with mlt.run('big'):\n"
        "    a = b'\\x01' * (400 * 2**20)\n"
        "    del a\n"
        "with mlt.run('small'):\n"
        "    b = b'\\x01' * (50 * 2**20)\n"
        "    del b\n"
    )
    assert kernel.run(code).status == "ok"
    e = mlt.Experiment(exp)
    runs = e.runs().set_index("name")
    cell = e.cells().iloc[-1]
    above = runs["peak_rss_bytes"] - runs["rss_start_bytes"]
    assert abs(above["big"] - 400 * MiB) <= MiB  # exact within 1 MiB of the allocation
    assert abs(above["small"] - 50 * MiB) <= MiB
    big = runs.loc["big", "peak_rss_bytes"]
    assert cell["peak_rss_bytes"] >= big  # the cell's own peak stays right
    assert runs.loc["big", "wall_s"] > 0 and runs.loc["big", "wall_s"] < cell["wall_s"]


def test_an_exception_in_a_run_block_ends_it_as_error_and_goes_on(kernel, exp):
    reply = kernel.run(
        "with mlt.run('boom', lr=0.1):\n    mlt.log_metric('loss', 1.0)\n    raise ValueError('bad data')"
    )
    assert reply.content["ename"] == "ValueError" and reply.content["evalue"] == "bad data"
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply.content["traceback"]))
    assert "raise ValueError('bad data')" in traceback and "mlt_kernel" not in traceback.split("raise")[-1]
    (run,) = mlt.Experiment(exp).runs().to_dict("records")
    assert run["status"] == "error" and run["params"] == {"lr": 0.1}
    assert kernel.run("print(mlt.current_run())").stdout.strip() == "None"


def test_a_run_started_in_a_run_is_its_child(kernel, exp):
    code = (
        "# mlt: record name=search\n"
        "for lr in [0.1, 0.2]:\n"
        "    with mlt.run('trial', lr=lr):\n"
        "        mlt.log_metric('loss', lr)\n"
        "mlt.log_metric('best', 0.1)"
    )
    assert kernel.run(code).status == "ok"
    kernel.run("outer = mlt.start('outer')\ninner = mlt.start('inner')")
    kernel.run("mlt.stop(outer)")  # ends the runs started inside it too
    e = mlt.Experiment(exp)
    runs = e.runs().set_index("name")
    search_id = runs.loc["search", "run_id"]
    assert runs.loc["trial", "parent_run_id"].tolist() == [search_id, search_id]
    assert runs.loc["trial", "loss"].tolist() == [0.1, 0.2]  # each to the innermost run
    assert runs.loc["search", "best"] == 0.1 and pd.isna(runs.loc["search", "loss"])
    assert runs.loc["inner", "parent_run_id"] == runs.loc["outer", "run_id"]
    assert set(runs.loc[["outer", "inner"], "status"]) == {"finished"}
