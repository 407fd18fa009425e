"""The key footer on a narrow terminal: compact (less space between keys) below 110 columns,
and without its "^p Palette" below 90, where it pushed the step keys off ("[ Ti" at 80
columns); Ctrl+P still opens the palette, and the help lists it."""
from __future__ import annotations

from textual.widgets import Footer

COMPACT_BELOW = 110     # columns: the fleet view's full footer needs about 105
PALETTE_BELOW = 90      # the compact one, with the palette's key, about 86


class KeyFooter(Footer):
    def on_resize(self) -> None:
        self.compact = self.size.width < COMPACT_BELOW
        self.show_command_palette = self.size.width >= PALETTE_BELOW
