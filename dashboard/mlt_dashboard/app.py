"""The app: one factory per page, each wrapping the page in the shell.

The shell is the header (experiment, sessions, runs, live status), the
navigation and the experiment picker; it owns the session's ``Source`` and the
periodic callback that keeps the page live. Nothing is shared between browser
sessions: every factory call builds its own source and widgets.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn

from mlt_dashboard import style
from mlt_dashboard.markup import el, join, trusted
from mlt_dashboard.page import Links, Page, html, session_arg
from mlt_dashboard.queries import Source
from mlt_kernel.core import layout

if TYPE_CHECKING:
    from panel.io.application import TViewableFuncOrPath

log = logging.getLogger("mlt_dashboard")

#: Seconds between looks at the experiment folder.
REFRESH_S = 3.0


@dataclass(frozen=True)
class AppConfig:
    """What ``mlt-dashboard`` was asked to show."""

    root: Path
    refresh_s: float = REFRESH_S
    #: ``s3://…`` when PATH is an experiment on object storage; *root* is then its local mirror.
    remote: str | None = None

    @property
    def single(self) -> bool:
        """PATH is one experiment (no picker)."""
        return self.remote is not None or layout.is_experiment(self.root)

    def experiments(self) -> list[Path]:
        return [self.root] if self.remote is not None else layout.find_experiments(self.root)

    def source(self, experiment: Path) -> Source:
        return Source(self.remote if self.remote is not None else experiment)


def page_classes() -> dict[str, type[Page]]:
    """The pages by slug (importing them: Panel, Bokeh)."""
    from mlt_dashboard.cells import CellsPage
    from mlt_dashboard.compare import ComparePage
    from mlt_dashboard.documents import DocumentsPage
    from mlt_dashboard.run import RunPage
    from mlt_dashboard.summary import SummaryPage

    return {p.slug: p for p in (SummaryPage, RunPage, ComparePage, CellsPage, DocumentsPage)}


NAV = (("summary", "Summary"), ("run", "Run"), ("compare", "Compare"), ("cells", "Cells"), ("documents", "Documents"))


class Shell(pn.viewable.Viewer):
    """Header, navigation and one page, refreshed while the folder changes."""

    def __init__(self, config: AppConfig, slug: str, **params: Any) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]  # param.Parameterized's is unannotated
        self.config = config
        self.slug = slug
        experiments = config.experiments()
        wanted = session_arg("exp")
        names = [p.name for p in experiments]
        chosen = next((p for p in experiments if p.name == wanted), experiments[0] if experiments else None)
        self.links = Links(None if config.single or chosen is None else chosen.name)
        self.header = html()
        self.picker = None
        if not config.single and len(experiments) > 0:
            self.picker = pn.widgets.Select(
                name="", options=names, value=chosen.name if chosen else None, width=240, margin=(8, 10)
            )
            self.picker.param.watch(self._pick, "value")
        self.source: Source | None = None
        self.page: Page | None = None
        self.body = pn.Column(sizing_mode="stretch_width")
        if chosen is None:
            self.body[:] = [
                html(
                    style.empty(
                        f"No experiment in {config.root}",
                        join(
                            [
                                trusted("Choose the <b>Python (MLTrack)</b> kernel in a notebook and set "),
                                el("code", f'EXP_PATH = "{config.root}/my-experiment"'),
                                " in its first cell; the experiment appears here as soon as a cell has run.",
                            ]
                        ),
                    )
                )
            ]
        else:
            self._open(chosen)
        self._draw_header()
        pn.state.add_periodic_callback(self._tick, period=int(config.refresh_s * 1000))
        pn.state.on_session_destroyed(self._close)

    def _open(self, experiment: Path) -> None:
        self.source = self.config.source(experiment)
        self.page = page_classes()[self.slug](self.source, self.links)
        self.body[:] = [self.page]

    def _pick(self, event: Any) -> None:
        loc = pn.state.location
        if loc is not None:
            loc.reload = True
            loc.search = "?" + urllib.parse.urlencode({"exp": event.new})

    def _tick(self) -> None:
        # The periodic callback is the one boundary that must survive a bad read
        # (a file replaced mid-compaction): log it and try again next time.
        try:
            if self.source is None:
                found = self.config.experiments()
                if found:  # the first experiment appeared in an empty folder
                    self.links = Links(None if self.config.single else found[0].name)
                    self._open(found[0])
            elif self.source.refresh() and self.page is not None:
                self.page.refresh()
        except Exception:
            log.exception("refreshing the %s page failed", self.slug)
        self._draw_header()

    def _close(self, _ctx: Any) -> None:
        if self.page is not None:
            self.page.close()
        if self.source is not None:
            self.source.close()

    def _draw_header(self) -> None:
        nav = join(
            el(
                "a",
                label,
                href=self.links.href(slug),
                class_="active" if slug == self.slug else None,
                data_testid=f"nav-{slug}",
            )
            for slug, label in NAV
        )
        if self.source is None:
            meta = el("span")
            name = "no experiment"
        else:
            counts = self.source.counts()
            ago = max(int(time.time() - self.source.changed_at), 0)
            live = counts["running_sessions"] > 0
            status = (
                f"live, updated {ago} s ago"
                if live
                else f"no kernel running · checked every {self.config.refresh_s:g} s"
            )
            sessions = f"{counts['sessions']} session{'s' if counts['sessions'] != 1 else ''}"
            runs = f"{counts['runs']} run{'s' if counts['runs'] != 1 else ''}"
            meta = el(
                "span",
                f"{sessions} · {runs} · ",
                el("span", class_="mlt-live" if live else "mlt-live idle"),
                status,
                class_="meta",
            )
            name = self.source.name
        heading = el("h1", "MLTrack · ", el("span", name, class_="exp", data_testid="experiment"))
        self.header.object = join([el("div", heading, meta, class_="mlt-header"), el("nav", nav, class_="mlt-nav")])

    def __panel__(self) -> Any:
        top = pn.Row(self.header, sizing_mode="stretch_width")
        if self.picker is not None:
            top.append(self.picker)
        return pn.Column(top, self.body, sizing_mode="stretch_width", margin=(0, 16))


def page_factories(config: AppConfig) -> dict[str, TViewableFuncOrPath]:
    """``{slug: factory}`` for ``pn.serve``: every call builds a fresh page for one browser session."""

    def factory(slug: str) -> Callable[[], Shell]:
        def build() -> Shell:
            return Shell(config, slug)

        build.__name__ = f"{slug}_page"
        return build

    return {slug: factory(slug) for slug, _ in NAV}
