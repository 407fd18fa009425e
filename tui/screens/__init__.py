"""tft-top's screens: the server drill-down and help."""
