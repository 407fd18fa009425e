"""A short plain-text summary of a snapshot, for `tft-top predict`."""
from __future__ import annotations

from engine.model_dir import uncalibrated_words
from engine.risk import format_probability
from engine.snapshot import Snapshot


def model_badge(snap: Snapshot) -> str:
    """`TFT on cpu`, `HEURISTIC (why)` or `MIXED (n servers on heuristic)` — the same words the TUI shows."""
    meta = snap.metadata
    kind = meta.get("model_type")
    raw = uncalibrated_words(meta)
    if kind == "TFT":
        return f"TFT on {meta.get('device', 'cpu')}{raw}"
    if kind == "mixed":
        n = meta.get('servers_on_heuristic', 0)
        why = meta.get("heuristic_why")
        return f"MIXED ({n} server{'' if n == 1 else 's'} on heuristic{': ' + why if why else ''}){raw}"
    reasons = {s.reason for s in snap.servers if s.reason}
    why = meta.get("model_reason") or (reasons.pop() if len(reasons) == 1 else "see per-server reasons")
    return f"HEURISTIC ({why})"


def _minutes(m: float | None) -> str:
    if m is None:
        return "—"
    if m == 0:
        return "now"
    return f"{int(m // 60)}h{int(m % 60):02d}" if m >= 60 else f"{int(m)} min"


def format_summary(snap: Snapshot, top: int = 10) -> str:
    env = snap.environment
    lines = [
        f"tft-top forecast as of {snap.data_time or '(no data yet)'} — model: {model_badge(snap)}",
        f"fleet: {env.total_servers} servers, health {env.health_text(1)} %, "
        f"{env.high_risk_servers} high-risk; P(incident) 30 min {format_probability(env.incident_probability_30m)}, "
        f"8 h {format_probability(env.incident_probability_8h)}" if env.total_servers else
        # (no fresh server: nothing is known of the fleet, not "health 100 %, nothing heading")
        "fleet: no server reporting: no health or incident probability to give",
    ]
    changed = snap.metadata.get("thresholds_changed")
    if changed:         # (the app's header shows them; every figure below is judged against them)
        lines.insert(1, f"thresholds changed: {changed} (others at their defaults)")
    newest = snap.metadata.get("newest_before_requested")
    if newest:
        asked = snap.metadata.get("requested_at", "")
        lines.insert(1, f"(--at {asked[:16]}Z: no server sent data between {newest[:16]}Z and then; "
                        f"this is the forecast as of {newest[:16]}Z)")
    heading = [s for s in sorted(snap.servers, key=lambda s: (-s.risk_8h, s.server_name))
               if s.risk_8h > 0.01 or s.minutes_to_breach is not None]
    ranked = heading[:top]
    if ranked:
        lines.append(f"{'server':<16}{'profile':<10}{'risk 30m':>9}{'risk 8h':>9}  {'breach':<27}{'source'}")
        for s in ranked:
            breach = "—"
            if s.breach_metric and s.minutes_to_breach is not None:
                breach = f"{s.breach_metric} {_minutes(s.minutes_to_breach)}"
                breach += " (p90)" if s.breach_basis == "p90" else ""
            # the reason is in the header already when it is the model's or the whole fleet's
            shared = s.reason is None or s.reason.startswith("no model") or s.reason in lines[0]
            src = s.source if shared else f"{s.source} ({s.reason})"
            lines.append(f"{s.server_name:<16}{s.profile:<10}{format_probability(s.risk_30m):>9}"
                         f"{format_probability(s.risk_8h):>9}  {breach:<27}{src}")
        if len(heading) > top:      # the list is cut: say so (`--json` has every server)
            lines.append(f"… and {len(heading) - top} more heading for a threshold (--json lists every server)")
        if any(s.breach_basis == "p90" for s in ranked):
            lines.append("breach: when the p50 forecast reaches critical; (p90): only the p90 does (possible)")
    elif env.total_servers:
        lines.append("no server is heading for a critical threshold in the next 8 h")
    after = snap.metadata.get("stale_after_minutes")
    over = f"over {after:g} min" if isinstance(after, (int, float)) else "too much"
    for kind, why in (("stale", f"newest sample {over} older than the fleet's"),
                      ("forgotten", "silent over a day: forgotten")):
        count = snap.metadata.get(f"{kind}_servers") or 0
        if not count:
            continue
        # left out of every figure above: an operator must know the fleet shown is not all of it
        # (the app and the daemon keep no forgotten server: predict names them, when it can)
        examples = snap.metadata.get(f"{kind}_examples") or []
        named = ", ".join(f"{e['server']} (last {e['last_seen'][:16]}Z)" for e in examples)
        more = count - len(examples)
        lines.append(f"{count} server{'' if count == 1 else 's'} left out ({why})"
                     + (f": {named}" if named else "") + (f" and {more} more" if named and more > 0 else ""))
    # critical first (a list cut at `top` must not drop them for warnings), then the soonest crossing
    ongoing = sorted((a for a in snap.alerts if a.state == "ongoing"),
                     key=lambda a: (a.severity != "critical", a.lead_minutes if a.lead_minutes is not None else 1e9,
                                    a.server_name, a.metric))
    if ongoing:
        since = snap.metadata.get("alerts_since")
        # (predict replays only the hour before its time: an older alert shows as opened then)
        lines.append(f"{len(ongoing)} ongoing alert{'' if len(ongoing) == 1 else 's'}"
                     + (f" (alert history from {since[:16]}Z):" if since else ":"))
        # an alert whose condition has cleared (it resolves after an hour clear) says so first,
        # then what its last condition said, as of then: "critical … may reach … clear since"
        # read as three claims about now
        lines += [f"  [{a.severity}] {a.server_name}: {a.message}" if not a.clear_minutes > 0 else
                  f"  [{a.severity}, clear for {_minutes(a.clear_minutes)}] {a.server_name}: "
                  f"{a.message.removeprefix(f'{a.severity} until it resolves: ')} "
                  f"(its last condition, {_minutes(a.clear_minutes)} ago; it resolves after an hour clear)"
                  for a in ongoing[:top]]
        if len(ongoing) > top:
            lines.append(f"  … and {len(ongoing) - top} more (--json lists every alert)")
    silent = [a for a in snap.alerts if a.state != "ongoing" and a.resolution == "silent"]
    if silent:
        named = ", ".join(f"{a.server_name} ({a.metric}, {a.severity})" for a in silent[:top])
        lines.append(f"{len(silent)} alert{'' if len(silent) == 1 else 's'} closed because the server went silent, "
                     f"not because it recovered: {named}" + (" …" if len(silent) > top else ""))
    return "\n".join(lines)
