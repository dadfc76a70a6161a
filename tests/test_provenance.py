"""Provenance: where a session ran and what a run ran with, in a real kernel."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

import psutil
import pytest

import mlt_kernel as mlt
from mlt_kernel.recording.provenance import ENV_ALLOW, clean_remote, git

TOKEN = "ghp_S3cr3tT0k3nValue0123456789"
SECRET = "hunter2-not-for-the-record"


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        (f"https://user:{TOKEN}@github.com/o/r.git", "https://github.com/o/r.git"),
        (f"https://{TOKEN}@github.com/o/r.git", "https://github.com/o/r.git"),
        (
            f"https://oauth2:{TOKEN}@gitlab.example:8443/o/r.git?private_token={TOKEN}#x",
            "https://gitlab.example:8443/o/r.git",
        ),
        (f"ssh://git:{TOKEN}@host/r.git", "ssh://host/r.git"),
        ("ssh://git@host:2222/r.git", "ssh://git@host:2222/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        (f"me:{TOKEN}@host:o/r.git", "host:o/r.git"),
        ("/srv/git/a@b/r.git", "/srv/git/a@b/r.git"),
        ("file:///srv/r.git", "file:///srv/r.git"),
        (f"persistent-https::https://{TOKEN}@github.com/o/r", "persistent-https::https://github.com/o/r"),
        (f"hg::https://user:{TOKEN}@host/r", "hg::https://host/r"),
        (f"ftp://{TOKEN}@host/r", "ftp://host/r"),
        (f"HTTPS://{TOKEN}@Host/r", "https://host/r"),
        (f"user:{TOKEN}@ss@host:o/r", "host:o/r"),
        (f"user:p/{TOKEN}@host:o/r", "host:o/r"),
        ("git@host:path/with@at", "git@host:path/with@at"),
        (f"https://{TOKEN}@host/r\nhttps://{TOKEN}@host", None),
        (f"https://{TOKEN}@[::1/o/r", None),
    ],
)
def test_remote_urls_lose_their_credentials(url: str, kept: str | None) -> None:
    assert clean_remote(url) == kept


def _git(folder: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True, env=env).stdout


def _repo(folder: Path, remote: str | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    _git(folder, "init", "-q", "-b", "trunk")
    (folder / "train.py").write_text("x = 1\n")
    _git(folder, "add", "train.py")
    _git(folder, "commit", "-q", "-m", "first")
    if remote is not None:
        _git(folder, "remote", "add", "origin", remote)
    return _git(folder, "rev-parse", "HEAD").strip()


def test_git_clean_dirty_and_outside(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = _repo(repo, f"https://me:{TOKEN}@github.com/team/models.git")
    assert git(repo) == {
        "git_commit": head,
        "git_branch": "trunk",
        "git_dirty": False,
        "git_remote": "https://github.com/team/models.git",
    }
    (repo / "untracked.csv").write_text("a\n")  # untracked files (outputs, experiment folders) are not changes
    assert git(repo)["git_dirty"] is False
    (repo / "train.py").write_text("x = 2\n")
    assert git(repo)["git_dirty"] is True
    _git(repo, "checkout", "-q", "--detach")
    assert git(repo)["git_branch"] is None
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git(outside) == {}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_ALLOW:
        monkeypatch.delenv(name, raising=False)


def test_sessions_and_runs_carry_provenance(start_kernel, tmp_path, clean_env) -> None:
    repo = tmp_path / "repo"
    head = _repo(repo, f"https://me:{TOKEN}@github.com/team/models.git")
    exp = repo / "exp"
    k = start_kernel(
        cwd=repo,
        env={"OMP_NUM_THREADS": "3", "PYTHONHASHSEED": "0", "MLT_TEST_SECRET": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    k.run(f"EXP_PATH = {str(exp)!r}\nimport numpy, sklearn")
    assert k.run("# mlt: record name=fit alpha=1\nimport mlt_kernel as mlt\nmlt.log_metric('acc', 0.5)").status == "ok"
    k.shutdown()

    e = mlt.Experiment(exp)
    (session,) = e.sessions().to_dict("records")
    assert session["git_commit"] == head and session["git_branch"] == "trunk"
    assert session["git_dirty"] is False  # the experiment folder is untracked
    assert session["git_remote"] == "https://github.com/team/models.git"
    assert session["cpu_cores"] == os.cpu_count()
    assert session["ram_bytes"] == psutil.virtual_memory().total
    assert session["platform"] and session["cpu_model"]
    assert isinstance(session["gpus"], list)
    (run,) = e.runs().to_dict("records")
    assert run["env"] == {"OMP_NUM_THREADS": "3", "PYTHONHASHSEED": "0"}
    for dist in ("numpy", "scikit-learn", "pyzmq"):
        assert run["packages"][dist] == importlib.metadata.version(dist)
    assert "duckdb" not in run["packages"]  # installed, never imported in the kernel
    stored = b"".join(p.read_bytes() for p in exp.rglob("*") if p.is_file())
    assert TOKEN.encode() not in stored and SECRET.encode() not in stored


def test_dirty_checkout_and_no_repository(start_kernel, tmp_path, clean_env) -> None:
    repo = tmp_path / "repo"
    _repo(repo)
    (repo / "train.py").write_text("x = 2\n")
    k = start_kernel(cwd=repo)
    k.run(f"EXP_PATH = {str(tmp_path / 'a')!r}")
    plain = tmp_path / "plain"
    plain.mkdir()
    k2 = start_kernel(cwd=plain)
    k2.run(f"EXP_PATH = {str(tmp_path / 'b')!r}")
    k.shutdown()
    k2.shutdown()
    (dirty,) = mlt.Experiment(tmp_path / "a").sessions().to_dict("records")
    assert dirty["git_dirty"] is True and dirty["git_remote"] is None
    (outside,) = mlt.Experiment(tmp_path / "b").sessions().to_dict("records")
    assert outside["git_commit"] is None and outside["git_dirty"] is None
    assert outside["cpu_cores"] == os.cpu_count()  # the machine is known anywhere


def test_provenance_can_be_turned_off(start_kernel, tmp_path, clean_env) -> None:
    exp = tmp_path / "exp"
    k = start_kernel(extra_arguments=["--MLTrackKernel.provenance=False"], env={"OMP_NUM_THREADS": "2"})
    k.run(f"EXP_PATH = {str(exp)!r}")
    k.run("# mlt: record name=quiet\nx = 1")
    k.shutdown()
    e = mlt.Experiment(exp)
    (session,) = e.sessions().to_dict("records")
    assert session["platform"] is None and session["ram_bytes"] is None
    (run,) = e.runs().to_dict("records")
    assert run["packages"] is None and run["env"] is None


def test_replay_header_names_the_commit_and_the_packages_that_differ(start_kernel, tmp_path, clean_env) -> None:
    repo = tmp_path / "repo"
    head = _repo(repo)
    exp = repo / "exp"
    k = start_kernel(cwd=repo)
    k.run(f"EXP_PATH = {str(exp)!r}\nimport numpy")
    k.run("# mlt: record name=fit\nx = numpy.arange(3).sum()")
    k.shutdown()
    header = mlt.Experiment(exp).replay("fit").cells[0].source
    assert f"git commit `{head}` on branch `trunk`" in header
    assert "packages it imported have the same versions here" in header

    from mlt_kernel.read.replay import different_packages

    numpy_now = importlib.metadata.version("numpy")
    assert different_packages(
        {"numpy": "0.0.1", "no-such-dist-xyz": "1.0", "pyzmq": importlib.metadata.version("pyzmq")}
    ) == [
        ("no-such-dist-xyz", "1.0", None),
        ("numpy", "0.0.1", numpy_now),
    ]


RUN_CELL = (
    "# mlt: record name=ridge\nalpha = {alpha}\nmlt.log_params(alpha=alpha, solver='svd')\nmlt.log_metric('acc', 0.5)"
)


def test_diff_shows_the_one_param_and_the_one_line_that_changed(start_kernel, tmp_path, clean_env) -> None:
    exp = tmp_path / "exp"
    k = start_kernel()
    k.run(f"EXP_PATH = {str(exp)!r}\nimport mlt_kernel as mlt")
    assert k.run(RUN_CELL.format(alpha=0.1)).status == "ok"
    assert k.run(RUN_CELL.format(alpha=0.2)).status == "ok"
    k.shutdown()
    e = mlt.Experiment(exp)
    a, b = e.runs()["run_id"]
    d = e.diff(a, b)
    la, lb = d.labels
    assert (la, lb) == (f"ridge ({a[-8:]})", f"ridge ({b[-8:]})")
    assert d.params.to_dict("index") == {"alpha": {la: 0.1, lb: 0.2, "differs": True}}
    assert d.metrics.empty and d.provenance.empty
    changed = [line for line in d.code[lb].splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-alpha = 0.1", "+alpha = 0.2"]
    text = str(d)
    assert "alpha: " in text and "0.1" in text and "0.2" in text and "Metrics: the same" in text
    assert "solver" not in text.partition("Code of the run")[0]  # the same in both: left out of the tables
    full = e.diff(a, b, only_differences=False)
    assert full.params.loc["solver"].tolist() == ["svd", "svd", False]
    assert full.metrics.loc["acc"].tolist() == [0.5, 0.5, False]
    assert full.provenance.loc["git_commit", "differs"] == False  # noqa: E712 - a numpy-free object column
    lineage = d.lineage[lb]  # b's session ran a's cell before it
    assert lineage.count("\n+alpha = 0.2") == 1 and "-alpha" not in lineage
    with pytest.raises(ValueError, match="at least two runs"):
        e.compare([a])


def test_a_repositorys_filters_never_run(tmp_path: Path) -> None:
    """A folder copied with its .git brings its configuration: its clean filter must not run."""
    repo = tmp_path / "repo"
    _repo(repo)
    marker = tmp_path / "ran"
    (repo / ".gitattributes").write_text("* filter=x\n")
    _git(repo, "config", "filter.x.clean", f"sh -c 'touch {marker}; cat'")
    _git(repo, "config", "filter.y.process", f"sh -c 'touch {marker}'")
    (repo / "train.py").write_text("x = 3\n")
    assert git(repo)["git_dirty"] is True
    assert not marker.exists()


def test_compare_labels_stay_unique_and_hostile_headers_stay_text() -> None:
    from mlt_kernel.read.compare import RunDiff, RunFacts, _label
    from mlt_kernel.read.replay import _header

    def facts(run_id: str, name: str) -> RunFacts:
        return RunFacts(run_id, name, "finished", {"a": 1}, {}, {}, "", "")

    runs = [facts("x-00000001", "dup"), facts("y-00000001", "dup"), facts("z", "dup (00000001)"), facts("w", "differs")]
    _label(runs)
    labels = [f.label for f in runs]
    assert len(set(labels)) == 4 and "differs" not in labels
    assert list(RunDiff.build(runs, only_differences=False).params.columns) == [*labels, "differs"]
    empty = RunDiff.build([])
    assert empty.params.empty and str(empty).startswith("Runs: ")

    evil = "![x](https://evil.example/p.png) <img src=x onerror=alert(1)> `code`"
    header = _header(
        {"name": evil, "run_id": "r", "packages": {evil: evil}},
        {"notebook": evil, "hostname": evil, "git_commit": "abc", "git_branch": evil, "git_remote": evil},
        None,
    )
    # Every value from the folder sits in a code span: Markdown shows it, never renders it.
    assert "](" not in header.replace("`![x](https://evil.example/p.png) <img src=x onerror=alert(1)> 'code'`", "")
