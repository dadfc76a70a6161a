"""``mlt-kernel``: install the kernelspec, compact an experiment, push or pull one to S3, replay a run."""

from __future__ import annotations

import argparse
import errno
import sys

from mlt_kernel.core.version import __version__


def _install(args: argparse.Namespace) -> int:
    from mlt_kernel.kernelspec import install

    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        path = install(user=args.user, prefix=prefix, kernel_name=args.name, display_name=args.display_name)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EACCES:
            hint = "; try --user, or --sys-prefix inside a virtual environment"
        print(f"mlt-kernel install: {exc.strerror or exc}: {exc.filename or prefix}{hint}", file=sys.stderr)
        return 1
    print(f"Installed kernelspec {args.name} in {path}")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from mlt_kernel.core.locations import is_remote

    if is_remote(args.path):
        from mlt_kernel.store import remote

        try:
            counts = remote.compact(args.path)
        except (ValueError, OSError, OverflowError) as exc:
            print(f"mlt-kernel compact: {exc}", file=sys.stderr)
            return 2
        print(f"{args.path}: {counts.sent} merged file(s) uploaded, {counts.removed} part(s) they replace removed")
        return 0
    from mlt_kernel.store.compaction import compact_folder

    try:
        report = compact_folder(args.path, progress=not args.quiet)
    except FileNotFoundError as exc:
        print(f"mlt-kernel compact: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


def _transfer(args: argparse.Namespace) -> int:
    """``push`` and ``pull``: one line of counts, or one line of what went wrong."""
    from tqdm import tqdm

    from mlt_kernel.store import remote

    try:
        if args.command == "push":
            with tqdm(desc="pushing", unit="file", disable=args.quiet, leave=False) as bar:
                counts = remote.push(args.local, args.url, progress=bar.update)
        else:
            counts = remote.pull(args.url, args.local)
    except (ValueError, OSError) as exc:
        print(f"mlt-kernel {args.command}: {exc}", file=sys.stderr)
        return 2
    source, target = (args.local, args.url) if args.command == "push" else (args.url, args.local)
    print(f"{source} -> {target}: {counts}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from mlt_kernel.core.errors import MLTrackError
    from mlt_kernel.read import replay
    from mlt_kernel.read.experiment import Experiment

    try:
        with Experiment(args.exp) as exp:
            nb = exp.replay(args.run, exp_path=args.exp_path)
        path = replay.write(nb, args.output)
    except (MLTrackError, KeyError, ValueError, OSError) as exc:
        print(f"mlt-kernel replay: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote the replay of {args.run} to {path} ({len(nb.cells)} cells)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlt-kernel",
        description="MLTrack: the Python (MLTrack) Jupyter kernel and its experiment folders.",
    )
    parser.add_argument("--version", action="version", version=f"mlt-kernel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    inst = sub.add_parser("install", help="install the Python (MLTrack) kernelspec for Jupyter")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user (~/.local/share/jupyter)")
    where.add_argument("--sys-prefix", action="store_true", help=f"in this environment ({sys.prefix})")
    where.add_argument("--prefix", metavar="P", help="under prefix P (P/share/jupyter/kernels)")
    inst.add_argument("--name", default="mltrack", help="kernelspec name (default: mltrack)")
    inst.add_argument("--display-name", metavar="D", help="name shown in Jupyter (default: Python (MLTrack))")
    inst.set_defaults(func=_install)

    comp = sub.add_parser("compact", help="merge the Parquet files of closed sessions (makes queries faster)")
    comp.add_argument("path", help="an experiment folder, a folder of experiments, or s3://bucket/prefix")
    comp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(func=_compact)

    push = sub.add_parser("push", help="copy a local experiment to S3-compatible storage (again: only what is new)")
    push.add_argument("local", help="the experiment folder")
    push.add_argument("url", help="s3://bucket/prefix")
    push.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    push.set_defaults(func=_transfer)

    pull = sub.add_parser("pull", help="copy an experiment on S3-compatible storage into a local folder")
    pull.add_argument("url", help="s3://bucket/prefix")
    pull.add_argument("local", help="the folder to fill")
    pull.set_defaults(func=_transfer)

    rep = sub.add_parser("replay", help="write the cells that produced a run, in the order they ran, as a notebook")
    rep.add_argument("exp", help="the experiment folder")
    rep.add_argument("run", help="a run id, or a name unique in the experiment")
    rep.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.ipynb, or FILE.py (percent format)")
    rep.add_argument("--exp-path", metavar="P", help="the folder the replay records into (its EXP_PATH)")
    rep.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
