"""``mlt-dashboard``: serve an experiment folder, or write its one-file report."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from mlt_kernel.core import layout
from mlt_kernel.core.locations import is_remote, parse_remote

#: Seconds the server waits for the early page's runs before it imports Panel (the runs come first).
READ_FIRST_S = 3.0
#: Addresses that only this machine can reach.
LOOPBACK = ("127.0.0.1", "localhost", "::1")

DESCRIPTION = """\
Open a local web dashboard over an MLTrack experiment folder: a summary
comparing every run, a page per run, the cell ledger, and documents you can
edit and download. PATH is one experiment, or a folder of experiments (then
the dashboard has a picker). The dashboard runs in its own process, only reads
the folder (except when you edit documents), and refreshes while kernels write.
"""

EPILOG = """\
examples:
  mlt-dashboard mlt-experiments/default
  mlt-dashboard /shared/team-exps --port 8050 --no-browser
  mlt-dashboard mlt-experiments/churn --export churn-report.html
  mlt-dashboard s3://team-bucket/churn        # an experiment on S3-compatible storage

In a notebook, %mlt dashboard starts it for the notebook's experiment. With
pip install "mlt-kernel[hub]", JupyterLab's launcher has an MLTrack tile that
serves $MLT_EXP_PATH (else ./mlt-experiments) through jupyter-server-proxy.

Nothing is fetched from the internet: scripts and styles come from the local
server, and an exported report has every chart, plot and note inlined. Open
the URL printed at start: it carries an access token (like Jupyter's), so other
accounts on a shared machine cannot read your runs.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlt-dashboard",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="an experiment folder, or a folder of experiment folders")
    parser.add_argument(
        "--port", type=int, default=None, metavar="N", help="port to listen on (default: the first free one from 5006)"
    )
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default: 127.0.0.1, this machine only); another address "
        "lets anyone who can reach it read every run, note and document",
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        default=None,
        help="read the access token from FILE (default: $MLT_DASHBOARD_TOKEN, else a new random "
        "one); only a browser that opened the printed URL gets pages",
    )
    parser.add_argument(
        "--token",
        metavar="T",
        default=None,
        help="the access token itself; other accounts on this machine can read a command line, "
        "so prefer $MLT_DASHBOARD_TOKEN or --token-file",
    )
    parser.add_argument(
        "--no-token",
        action="store_true",
        help="serve without an access token: every account on this machine can read the dashboard",
    )
    parser.add_argument(
        "--unix-socket",
        metavar="FILE",
        default=None,
        help="listen on a Unix socket at FILE instead of a TCP port: only accounts that can open FILE's "
        "folder can connect",
    )
    parser.add_argument(
        "--jupyter-server-proxy",
        action="store_true",
        help="served by jupyter-server-proxy (the JupyterLab launcher's MLTrack tile, with --unix-socket): "
        "the Jupyter server's login guards the dashboard, so MLTrack's own access token is off",
    )
    parser.add_argument(
        "--export",
        metavar="FILE.html",
        type=Path,
        default=None,
        help="write one self-contained offline HTML report (summary, runs, notes, plots, "
        "documents) and exit, instead of serving",
    )
    return parser


def _fail(message: str) -> int:
    print(f"mlt-dashboard: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    remote = None
    if is_remote(args.path):
        from mlt_kernel.store.mirror import fresh

        try:
            remote = parse_remote(args.path).url
            root = fresh(remote)
        except (ValueError, OSError) as exc:
            return _fail(str(exc))
        if not layout.is_experiment(root):
            return _fail(f"{remote} holds no MLTrack experiment")
    else:
        root = Path(args.path).expanduser()
        # The launcher's folder may not exist yet: it is shown once a notebook records into it.
        waits = args.jupyter_server_proxy and args.export is None
        if not root.exists() and not waits:
            return _fail(f"no such folder: {root}")
        if root.exists() and not root.is_dir():
            return _fail(f"not a folder: {root} (give an experiment folder or a folder of experiments)")
    found = layout.find_experiments(root)
    if args.export is not None:
        if not found:
            return _fail(f"no MLTrack experiment in {root}; nothing to export")
        from mlt_dashboard.export import write_report

        try:
            path = write_report(found, args.export)
        except OSError as exc:
            return _fail(f"cannot write {args.export}: {exc.strerror or exc}")
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    if sum(bool(x) for x in (args.no_token, args.token, args.token_file)) > 1:
        return _fail("--token, --token-file and --no-token contradict each other; give one")
    if args.jupyter_server_proxy and (args.unix_socket is None or args.token or args.token_file):
        return _fail(
            "--jupyter-server-proxy needs --unix-socket (a port would let every account on this machine in "
            "without a token) and takes no --token or --token-file"
        )
    if args.unix_socket is not None and (args.port is not None or args.address not in LOOPBACK[:1]):
        return _fail("--unix-socket replaces --port and --address; give one or the other")
    if args.port is not None and not 0 <= args.port <= 65535:
        return _fail(f"--port {args.port}: not a port number (0–65535)")
    if args.address not in LOOPBACK:
        print(
            f"mlt-dashboard: warning: listening on {args.address}; anyone who can reach this machine can read "
            "every run, note and document of this folder",
            file=sys.stderr,
        )
    if not found:
        print(f"mlt-dashboard: no experiment in {root} yet; the dashboard shows it once one appears", file=sys.stderr)

    from mlt_dashboard.early import EarlyResponder, listen
    from mlt_dashboard.server import ServerOptions, open_browser, serve
    from mlt_dashboard.tokens import TOKEN_ENV, new_token, read_token_file

    token = None
    if args.jupyter_server_proxy:
        print(
            "mlt-dashboard: served by jupyter-server-proxy: the Jupyter server's login guards it, so MLTrack's "
            "own access token is off",
            file=sys.stderr,
            flush=True,
        )
    elif args.no_token:
        print(
            "mlt-dashboard: access token off (--no-token): every account on this machine can open it", file=sys.stderr
        )
    elif args.token_file is not None:
        try:
            token = read_token_file(args.token_file)
        except (OSError, ValueError) as exc:
            return _fail(f"--token-file {args.token_file}: {exc}")
    elif args.token:
        print(
            "mlt-dashboard: warning: --token puts the token in this process's command line, which every account "
            f"on this machine can read; use ${TOKEN_ENV} or --token-file instead",
            file=sys.stderr,
        )
        token = args.token
    else:
        token = os.environ.get(TOKEN_ENV) or new_token()
    options = ServerOptions(
        address=args.address,
        port=args.port,
        show=not (args.no_browser or args.jupyter_server_proxy),
        token=token,
        unix_socket=args.unix_socket,
    )
    if args.unix_socket is not None:
        # Behind jupyter-server-proxy, which waits for the socket: Bokeh binds it once the server is made.
        from mlt_dashboard.app import AppConfig

        print(f"MLTrack dashboard: {options.url(0)}", flush=True)
        try:
            serve(AppConfig(root.absolute(), remote=remote), options, None, handover=lambda: None)
        except OSError as exc:
            return _fail(f"cannot listen on {args.unix_socket}: {exc.strerror or exc}")
        return 0
    try:
        sock = listen(args.address, args.port)
    except OSError as exc:
        return _fail(f"cannot listen on {args.address}:{args.port or 'a free port'}: {exc.strerror or exc}")
    # The port answers from now on (with the runs as soon as they are read), while Panel is imported.
    opened: list[Path] = []
    with sock, EarlyResponder(sock, token, [root] if remote is not None else found) as early:
        url = options.url(int(sock.getsockname()[1]))
        print(f"MLTrack dashboard: {url}", flush=True)
        if options.show:
            redirect = open_browser(url)
            opened += [redirect] if redirect is not None else []
        try:
            early.wait_read(timeout=READ_FIRST_S)
            from mlt_dashboard.app import AppConfig  # Panel: most of a second

            serve(AppConfig(root.absolute(), remote=remote), options, sock, handover=early.stop)
        except KeyboardInterrupt:
            pass  # interrupted while starting: as quietly as once serving
        finally:
            for path in opened:
                with contextlib.suppress(OSError):
                    path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
