"""The one registry of user actions: key bindings, the help screen and the command palette.

A key is defined here once.  ``bindings()`` turns the registry into Textual
``BINDINGS``, ``tui.screens.help`` lists it, and ``ActionsProvider`` offers it in the
command palette (Ctrl+P).  Every action named here is an ``action_<name>`` method of
``TftTopApp``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.markup import escape


@dataclass(frozen=True)
class Action:
    keys: str            # Textual key string; a comma separates alternatives ("j,down")
    action: str          # TftTopApp.action_<action>
    description: str
    show: bool = True    # shown in the footer
    label: str | None = None   # how the help screen writes the keys (default: from ``keys``)
    palette: bool = True       # offered in the command palette
    footer: str | None = None  # short footer label (default: the description)
    priority: bool = False     # checked before the focused widget's and the screen's own keys

    @property
    def key_label(self) -> str:
        if self.label:
            return self.label
        return " / ".join(_KEY_NAMES.get(k, k) for k in self.keys.split(","))


_KEY_NAMES = {"tab": "Tab", "down": "↓", "up": "↑", "right": "→", "left": "←", "enter": "Enter", "escape": "Esc", "ctrl+p": "Ctrl+P"}

ACTIONS: tuple[Action, ...] = (
    Action("q", "quit", "Quit", footer="Quit"),
    Action("question_mark", "help", "Help: every key", label="?", footer="Help"),
    Action("slash", "filter", "Filter servers by name or profile", label="/", footer="Filter"),
    Action("s", "cycle_sort", "Cycle sort (risk, name, cpu, memory, disk, load/crit, time to breach)",
           label="s", footer="Sort"),
    Action("p", "toggle_pause", "Pause / resume the forecast loop", footer="Pause"),
    Action("plus,equals_sign", "speed_up", "Faster replay (more ticks per second)", label="+",
           footer="Faster"),
    Action("minus", "slow_down", "Slower replay", label="-", footer="Slower"),
    Action("left_square_bracket", "step_back", "Step back one tick (pauses)", label="[", footer="Tick−"),
    Action("right_square_bracket", "step_forward",
           "Step forward one tick; on a live fleet, show the newest (pauses)", label="]", footer="Tick+"),
    Action("enter", "open_server", "Open the selected server: charts, alerts, importance", show=False),
    Action("escape", "back", "Back / clear the filter", show=False),
    Action("j,down", "cursor_down", "Next server", show=False),
    Action("k,up", "cursor_up", "Previous server", show=False),
    Action("right", "columns_right", "Next columns: those a narrow terminal leaves out on the right",
           show=False, label="→", palette=False),
    Action("left", "columns_left", "Previous columns, back to the left", show=False, label="←", palette=False),
    # (priority: the screen's own Tab moves the focus to "the next widget", which on the fleet
    # view would also stop at the hidden-then-shown filter box; this one toggles the two lists)
    Action("tab", "focus_alerts", "Alert log: select it to move through the alerts (↑ / ↓, j / k) and "
           "open one's server (Enter); Tab or Esc goes back to the fleet", label="Tab", show=False,
           priority=True),      # (not in the footer, full at 80 columns: the log's title says "Tab" when it overflows)
    Action("g", "top", "Back to the top row, and keep to it (the riskiest server under the risk sort)",
           show=False),
    Action("ctrl+p", "command_palette", "Command palette: every action by name", show=False,
           palette=False, footer="Palette"),
)


# actions whose every key is a character a text box (the filter) takes as text while it has
# the focus: "+" types a "+" there, so "+ Faster" must not be offered then
_TEXT_KEYS = {"slash", "plus", "equals_sign", "minus", "question_mark", "left_square_bracket",
              "right_square_bracket"}
TYPED_ACTIONS = frozenset(a.action for a in ACTIONS
                          if all(len(k) == 1 or k in _TEXT_KEYS for k in a.keys.split(",")))


def bindings() -> list[Binding]:
    out = []
    for a in ACTIONS:
        # enter and the arrows belong to the focused table first (its own bindings); the app's are
        # the fallback on the drill-down and help screens.
        out.append(Binding(a.keys, a.action, a.footer or a.description, show=a.show, key_display=a.label,
                           tooltip=a.description, priority=a.priority))
    return out


def by_action(name: str) -> Action:
    for a in ACTIONS:
        if a.action == name:
            return a
    raise KeyError(name)


class ActionsProvider(Provider):
    """The command palette's commands: the same registry as the keys."""

    def _entries(self):
        # not those that would do nothing here (a live fleet's speed, the drill-down's filter)
        unavailable = getattr(self.app, "unavailable_actions", dict)()
        return [a for a in ACTIONS if a.palette and a.action not in unavailable]

    async def discover(self) -> Hits:
        for a in self._entries():
            yield DiscoveryHit(Content(a.description), partial(self.app.run_action, a.action),
                               text=a.description, help=escape(f"key: {a.key_label}"))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for a in self._entries():
            score = matcher.match(a.description)
            if score > 0:
                yield Hit(score, matcher.highlight(a.description), partial(self.app.run_action, a.action),
                          text=a.description, help=escape(f"key: {a.key_label}"))
