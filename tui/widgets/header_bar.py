"""The header: model badge, fleet health, incident probabilities, data time, tick latency."""
from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from engine.model_dir import uncalibrated_words
from tui.format import fmt_prob, fmt_time, prob_style
from tui.widgets.fleet_table import matches

LOADING = "loading model…"


def model_badge(metadata: dict | None, servers=()) -> tuple[str, str]:
    """('TFT on cpu' | 'HEURISTIC (why)' | 'MIXED (n servers on heuristic)', style)."""
    if not metadata:
        return LOADING, "bold black on grey70"
    kind = str(metadata.get("model_type", "")).lower()
    if kind == "unknown":          # a daemon not reached yet (--connect): no forecast, no model type
        # (the reason, a URL's refusal, gets the header's second line: HeaderBar.render)
        return "CONNECTING", "bold black on grey70"
    # a model whose config.json has no band calibration: its p10-p90 are not the 80 % bands
    # the README measures (engine.summary.model_badge says the same)
    raw = uncalibrated_words(metadata)
    if kind == "tft":
        return f"TFT on {metadata.get('device', 'cpu')}{raw}", "bold black on green"
    if kind == "mixed":
        n = metadata.get("servers_on_heuristic", "?")
        why = metadata.get("heuristic_why")           # e.g. "short history" (engine.runtime.fallback_why)
        return (f"MIXED ({n} server{'s' if n != 1 else ''} on heuristic{': ' + str(why) if why else ''}){raw}",
                "bold black on dark_orange")
    why = metadata.get("model_reason")
    if not why:
        reasons = [s.reason for s in servers if getattr(s, "reason", None)]
        why = reasons[0] if reasons else "no model"
    why = str(why)
    if why.startswith("no model: "):
        why = why[len("no model: "):]
    # directories shortened to the file's name: the badge has one line (the drill-down and every
    # server's reason keep the whole path)
    why = _PATH.sub(lambda m: m.group(1), why)
    return f"HEURISTIC ({why})", "bold black on yellow"


_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?/?(?:[^\s/:()'\"]*[A-Za-z_][^\s/:()'\"]*/)+([^\s/:()'\"]+)")


def _silent_names(md: dict, n: int) -> Text:
    """'batch-03 since 01-16 00:25, … ' for the first n of the snapshot's stale_examples."""
    examples = [e for e in (md.get("stale_examples") or []) if isinstance(e, dict)][:n]
    text = ", ".join(f"{_short(str(e.get('server')), 24)} since {fmt_time(e.get('last_seen'))}" for e in examples)
    more = int(md.get("stale_servers") or 0) > len(examples)
    return Text(f"{text}{', …' if more else ''}", style="yellow")


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


@dataclass
class PlayState:
    speed: float = 1.0
    paused: bool = False
    sort: str = "risk"
    filter: str = ""
    live: bool = False
    paced: bool = True           # False: a wall-clock source, whose pace is not a speed


class HeaderBar(Widget):
    """Two lines; re-rendered on every snapshot (cheap: a few spans)."""

    DEFAULT_CSS = """
    HeaderBar { height: 2; padding: 0 1; background: $panel; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.snapshot = None
        self.status = "starting…"
        self.error: str | None = None
        self.play = PlayState()

    def set_status(self, text: str) -> None:
        self.status = text
        self.refresh()

    def set_error(self, text: str) -> None:
        self.error = text
        self.refresh()

    def set_snapshot(self, snapshot) -> None:
        self.snapshot = snapshot
        self.refresh()

    def set_play(self, play: PlayState) -> None:
        self.play = play
        self.refresh()

    @property
    def badge(self) -> str:
        snap = self.snapshot
        return model_badge(None if snap is None else snap.metadata, () if snap is None else snap.servers)[0]

    def render(self) -> Text:
        snap = self.snapshot
        line1 = Text(no_wrap=True, overflow="ellipsis")
        line1.append("tft-top ", "bold")
        badge, style = model_badge(None if snap is None else snap.metadata, () if snap is None else snap.servers)
        if snap is None and self.status.startswith("connecting"):
            badge = "CONNECTING"         # --connect runs no model here: "loading model…" would mislead
        if snap is None:
            if self.error:          # nothing is loading any more: no "loading model…" beside it
                line1.append("ENGINE STOPPED: ", "bold red")
                line1.append(self.error, "red")
                line2 = Text("no forecast: press q to quit", style="dim", no_wrap=True)
            else:
                line1.append(f" {badge} ", style)
                line1.append(f"  {self.status}", "dim")
                line2 = Text("waiting for the first forecast…", style="dim", no_wrap=True)
            return line1 + Text("\n") + line2
        md = snap.metadata
        p = self.play
        # after the badge, most important first (a narrow terminal cuts the end of the line)
        rest = Text()
        if self.error:
            rest.append("  ENGINE STOPPED: ", "bold red")
            rest.append(self.error, "red")
        if str(md.get("model_type", "")).lower() == "unknown" and not snap.servers:
            # a daemon not reached yet: no data time, play state or tick to show; the second
            # line says why the connection fails (a refused key, a refused connection), not
            # "no servers reporting": the daemon may have a fleet
            line1.append(f" {badge} ", style)
            line1.append_text(rest)
            if md.get("remote_url"):
                line1.append(f"  {md['remote_url']}", "dim")
            why = md.get("remote_error")
            line2 = Text(no_wrap=True, overflow="ellipsis")
            if p.paused:    # a paused app reads no new snapshot: say so, or it looks stuck connecting
                line2.append("❚❚ paused: the screen shows no new snapshot until p resumes", "bold yellow")
                if why:     # (and why it has none yet, after it)
                    line2.append(f"   {why}", "yellow")
            elif why:
                line2.append(f"{why} · retrying", "bold yellow")
            else:
                line2.append("waiting for the daemon's first snapshot…", "dim")
            return line1 + Text("\n") + line2
        rest.append("  data ")
        rest.append(fmt_time(snap.data_time), "bold")
        if snap.data_time:
            rest.append(" UTC")
        whole = []      # where the line may end without cutting an item ("sort: r…" read as nothing)
        resume = None   # (where, text) of the paused speed, the first to go where room is short
        status = md.get("source_status")         # a live source's own state, e.g. "prometheus STALE: …"
        stale = bool(status) and "STALE" in status
        # every server silent (the feed stopped): nothing on the screen is current either
        stale = stale or (not snap.servers and int(md.get("stale_servers") or 0) > 0)
        if stale:
            # next to the data time, where "▶ live" would be: an operator must not read a dead
            # feed's last snapshot as current (the details follow at the end of the line)
            rest.append("  ✖ STALE", "bold white on red")
        elif md.get("finished"):
            rest.append("  ■ replay finished", "bold magenta")
        elif md.get("daemon_finished") and not p.paused:
            # --connect to a daemon whose replay ran out: not "▶ live" over a frozen fleet
            rest.append("  ■ daemon's replay finished", "bold magenta")
        elif p.paused:
            rest.append("  ❚❚ paused", "bold yellow")
            if p.paced:        # +/- change the speed while paused: show what resuming will run at
                resume = (len(rest), f" ({p.speed:g}× on resume)")
                rest.append(resume[1], "yellow")
        elif p.paced:
            rest.append(f"  ▶ {p.speed:g}×", "bold green")
            lat = md.get("tick_latency_ms")
            if lat and p.speed > 1.25 * 1000.0 / lat:      # ticks cannot come faster than they take
                rate = 1000.0 / lat     # (one decimal below 2×: 0.67 read "≈1× reached" under "▶ 1×")
                shown = "<0.1" if rate < 0.1 else (f"≈{rate:.1f}" if rate < 2 else f"≈{rate:.0f}")
                rest.append(f" ({shown}× reached)", "yellow")
        else:
            rest.append("  ▶ live", "bold green")
        whole.append(len(rest))
        if p.filter:
            shown = sum(1 for s in snap.servers if matches(s, p.filter))
            rest.append(f"  filter: {p.filter} ({shown} of {len(snap.servers)})",
                        "bold cyan" if shown else "bold red")      # a blank table says why
            whole.append(len(rest))
        rest.append(f"  sort: {p.sort}", "cyan")
        whole.append(len(rest))
        changed = md.get("thresholds_changed")   # --thresholds: an operator reading the screen must know
        if changed:
            rest.append(f"  thresholds {changed}", "bold magenta")
            whole.append(len(rest))
        lat = md.get("tick_latency_ms")
        if lat is not None:
            rest.append(f"  tick {lat:.0f} ms")
            whole.append(len(rest))
        if status:
            rest.append(f"  {status}", "bold red" if "STALE" in status else "dim")
        elif md.get("source"):
            rest.append(f"  {md['source']}", "dim")
        # a long fallback reason is cut so that the data time and play state stay on the line
        # (the whole reason is in the drill-down and in every server's reason)
        width = self.size.width or 150
        # (room kept for the data time and the play state, what must stay; the rest gives way)
        essential = whole[0] - (len(resume[1]) if resume else 0) if whole else len(rest.plain)
        room = max(28, width - 2 - len("tft-top ") - 2 - min(essential, 52))
        if len(badge) > room and badge.startswith("MIXED ("):
            # the reason before the words: "MIXED (2 servers on heuris…)" at 80 columns
            badge = re.sub(r" servers? on heuristic", " on heur.", badge, count=1)
        if len(badge) > room and badge.endswith(")"):
            badge = badge[:room - 2] + "…)"
        line1.append(f" {badge} ", style)
        room = width - len(line1)
        if len(rest) > room and resume is not None:
            # "(1× on resume)" gives way before the sort and the filter (at 80 columns, paused,
            # they left the line and `s` seemed to do nothing)
            at, text = resume
            rest = rest[:at] + rest[at + len(text):]
            whole = [n - len(text) if n > at else n for n in whole]
        if len(rest) > room and not (status and "STALE" in status):
            # end after the last item that fits whole; a STALE source's status may be cut (its
            # start says it, and the drill-down and /status have all of it), a healthy one's
            # leaves (at 120 columns --local read "tick 513 ms  l…")
            ends = [n for n in whole if n <= room]
            if ends:
                rest = rest[:ends[-1]]
        line1.append_text(rest)

        env = snap.environment
        # narrower terminals get shorter labels, so the incident probabilities stay on the line
        compact, tight = width < 148, width < 96          # (content width: the terminal less 2)
        gap = "  " if tight else "   "      # at 80 columns the 8 h figure lost its last digit
        line2 = Text(no_wrap=True, overflow="ellipsis")
        silent = int(md.get("stale_servers") or 0)
        if env.total_servers == 0 and silent:
            # every server is silent (a feed that stopped): that is the news, not "not yet"
            # (no health, no incident probabilities: of no fresh server, nothing is known)
            line2.append(f"all {silent} server{'s' if silent != 1 else ''} silent", "bold yellow")
            names = _silent_names(md, 3)
            if names.plain:
                line2.append(": ", "yellow")
                line2.append_text(names)
            line2.append_text(_problem(md))
            return line1 + Text("\n") + line2
        elif env.total_servers == 0:      # no fleet is not a healthy fleet: no green 100 %
            line2.append("no servers reporting yet", "dim")
            line2.append_text(_problem(md))      # (the same words as beside a fleet)
            return line1 + Text("\n") + line2
        health_style = "bold green" if env.fleet_health >= 95 else ("bold yellow" if env.fleet_health >= 80 else "bold red")
        line2.append("health " if compact else "fleet health ")
        line2.append(f"{env.health_text(1)}%", health_style)
        line2.append(f" ({env.high_risk_servers}/{env.total_servers} high-risk)" if compact else
                     f" ({env.high_risk_servers} of {env.total_servers} high-risk)")
        if silent:      # left out of the table and every figure: the fleet shown is not all of it
            after = md.get("stale_after_minutes")
            over = f" >{after:g} min" if isinstance(after, (int, float)) else ""
            line2.append(f" · {silent} silent" if compact else f" · {silent} silent{over}, not shown", "bold yellow")
        # (most important first: a narrow terminal cuts the end of the line)
        ongoing = [a for a in snap.alerts if a.state == "ongoing"]
        # an open alert whose condition has cleared (it resolves after an hour clear) is not a
        # live one: counted apart from the critical ones, or a calm fleet reads as "2 critical"
        # for that hour
        clearing = sum(1 for a in ongoing if getattr(a, "clear_minutes", 0.0) > 0)
        crit = sum(1 for a in ongoing if a.severity == "critical" and not getattr(a, "clear_minutes", 0.0) > 0)
        ongoing = len(ongoing)
        probs = Text(f"{gap}incident 30m " if compact else f"{gap}incident probability 30 min ")
        probs.append(fmt_prob(env.incident_probability_30m), prob_style(env.incident_probability_30m) or "bold")
        probs.append(" · 8h " if compact else " · 8 h ")
        probs.append(fmt_prob(env.incident_probability_8h), prob_style(env.incident_probability_8h) or "bold")

        def alert_counts(with_clearing: bool, with_crit: bool = True) -> Text:
            t = Text(f"{gap}alerts {ongoing}" if compact else f"{gap}alerts {ongoing} ongoing")
            parts = [(f"{crit} crit" if compact else f"{crit} critical", "bold red")] if crit and with_crit else []
            parts += [(f"{clearing} clearing", "dim")] if clearing and with_clearing else []
            for i, (words, style) in enumerate(parts):     # "(2 critical, 1 clearing)"
                t.append(" (" if i == 0 else ", ")
                t.append(words, style)
            if parts:
                t.append(")")
            return t

        # the alert counts give way to the probabilities, which must stay whole (at 80 columns
        # "incident 30m 10…" was left of 100 %, and with 10 alerts "8h 10…"): the clearing
        # count first (the log marks those alerts ◌), then the critical one, then all (the
        # log's title counts them)
        for counts in (alert_counts(True), alert_counts(False), alert_counts(False, False), Text()):
            if len(line2.plain) + len(counts.plain) + len(probs.plain) <= width:
                break
        line2.append_text(counts)
        since = md.get("alerts_since")
        since = f" since {fmt_time(since)}" if since else ""
        # after a long step back the log starts again: "0 ongoing" is not "no alerts"; but
        # only where the probabilities still fit whole after it (at 100 columns it left
        # "incident 30m 10…" of "100%", and no 8 h figure)
        if since and not tight and len(line2.plain) + len(since) + len(probs.plain) <= width:
            line2.append(since, "dim")
        line2.append_text(probs)
        if silent and not tight:
            # which ones went quiet (the most recently seen first): often the most urgent news,
            # and their rows have left the table; after the figures, which must stay on the line;
            # only when the first name fits whole (the line's end may cut its time: a name cut
            # to one letter, or the label alone, tells nothing)
            names = _silent_names(md, 1 if compact else 2)
            first = names.plain.split(" since ")[0]
            if len(line2.plain) + len("   silent: ") + len(first) <= width:
                line2.append("   silent: ", "yellow")
                line2.append_text(names)
        line2.append_text(_problem(md))
        return line1 + Text("\n") + line2


def _problem(md: dict) -> Text:
    """The newest refused input or source failure, counted and timed ("" when none)."""
    problem = md.get("last_problem")
    if not problem:
        return Text()
    # (a daemon before 2026-11-29 sends the count as refused_records)
    n = int(md.get("problems_total", md.get("refused_records")) or 1)
    when = fmt_time(md.get("last_problem_at")) if md.get("last_problem_at") else ""
    return Text(f"   ⚠ {n} problem{'' if n == 1 else 's'}, newest {when} UTC: {problem}", "yellow")
