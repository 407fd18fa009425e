"""tft-top's widgets: header bar, fleet table, alert log, charts."""
