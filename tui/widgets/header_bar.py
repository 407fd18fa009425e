"""The header: model badge, fleet health, incident probabilities, data time, tick latency."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from tui.format import fmt_prob, fmt_time, prob_style

LOADING = "loading model…"


def model_badge(metadata: dict | None, servers=()) -> tuple[str, str]:
    """('TFT · cpu' | 'HEURISTIC (why)' | 'MIXED (n servers on heuristic)', style)."""
    if not metadata:
        return LOADING, "bold black on grey70"
    kind = str(metadata.get("model_type", "")).lower()
    if kind == "tft":
        return f"TFT · {metadata.get('device', 'cpu')}", "bold black on green"
    if kind == "mixed":
        n = metadata.get("servers_on_heuristic", "?")
        return f"MIXED ({n} server{'s' if n != 1 else ''} on heuristic)", "bold black on dark_orange"
    why = metadata.get("model_reason")
    if not why:
        reasons = [s.reason for s in servers if getattr(s, "reason", None)]
        why = reasons[0] if reasons else "no model"
    why = str(why)
    if why.startswith("no model: "):
        why = why[len("no model: "):]
    return f"HEURISTIC ({why})", "bold black on yellow"


@dataclass
class PlayState:
    speed: float = 1.0
    paused: bool = False
    sort: str = "risk"
    filter: str = ""
    live: bool = False


class HeaderBar(Widget):
    """Two lines; re-rendered on every snapshot (cheap: a few spans)."""

    DEFAULT_CSS = """
    HeaderBar { height: 2; padding: 0 1; background: $panel; }
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
        line1.append(f" {badge} ", style)
        if self.error:
            line1.append("  ENGINE STOPPED: ", "bold red")
            line1.append(self.error, "red")
        if snap is None:
            if not self.error:
                line1.append(f"  {self.status}", "dim")
            line2 = Text("waiting for the first forecast…", style="dim", no_wrap=True)
            return line1 + Text("\n") + line2
        md = snap.metadata
        p = self.play
        if md.get("source"):
            line1.append(f"  {md['source']}", "dim")
        line1.append("  data ")
        line1.append(fmt_time(snap.data_time), "bold")
        line1.append(" UTC")
        lat = md.get("tick_latency_ms")
        if lat is not None:
            line1.append(f"  tick {lat:.0f} ms")
        if md.get("finished"):
            line1.append("  ■ replay finished", "bold magenta")
        elif p.paused:
            line1.append("  ❚❚ paused", "bold yellow")
        else:
            line1.append(f"  ▶ {p.speed:g}×", "bold green")
        line1.append(f"  sort: {p.sort}", "cyan")
        if p.filter:
            line1.append(f"  filter: {p.filter}", "bold cyan")

        env = snap.environment
        line2 = Text(no_wrap=True, overflow="ellipsis")
        health_style = "bold green" if env.fleet_health >= 95 else ("bold yellow" if env.fleet_health >= 80 else "bold red")
        line2.append("fleet health ")
        line2.append(f"{env.fleet_health:.1f}%", health_style)
        line2.append(f" ({env.high_risk_servers} of {env.total_servers} high-risk)")
        line2.append("   incident probability 30 min ")
        line2.append(fmt_prob(env.incident_probability_30m), prob_style(env.incident_probability_30m) or "bold")
        line2.append(" · 8 h ")
        line2.append(fmt_prob(env.incident_probability_8h), prob_style(env.incident_probability_8h) or "bold")
        ongoing = sum(1 for a in snap.alerts if a.state == "ongoing")
        crit = sum(1 for a in snap.alerts if a.state == "ongoing" and a.severity == "critical")
        line2.append(f"   alerts {ongoing} ongoing")
        if crit:
            line2.append(f" ({crit} critical)", "bold red")
        return line1 + Text("\n") + line2
