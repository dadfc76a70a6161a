"""``python -m mlt_kernel.watcher --pid PID --session ID``: the watcher process (see ``loop``)."""

from mlt_kernel.watcher.loop import main

if __name__ == "__main__":
    raise SystemExit(main())
