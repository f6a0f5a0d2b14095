"""How a watched account looks from outside: the JSON of ``/api/v1/accounts``. Pure."""

from __future__ import annotations

from monitor.silences import Suppression
from monitor.watchlist import Watched


def account_json(watched: Watched, silenced: Suppression | None = None) -> dict[str, object]:
    """``silenced``: the silence or maintenance window covering the account now, if any
    (still probed and recorded; its pages wait or are dropped, see monitor.silences)."""
    st, key = watched.state, watched.key
    err = watched.last_error
    return {
        "platform": key.platform, "account": key.handle, "account_id": watched.account_id,
        "current_handle": watched.current_handle or key.handle,
        "moved_to": watched.moved_to,
        "state": st.state.value, "reason": st.reason.value if st.reason else None,
        "protected": watched.config.protected, "team": watched.config.team,
        "owner": watched.config.owner, "labels": dict(watched.config.labels),
        "since": st.since, "blind": st.blind, "outage_id": st.outage_id,
        "last_present_at": st.last_present_at, "first_absent_at": st.first_absent_at,
        "last_probe_at": watched.last_probe_at,
        "blind_reason": watched.blind_reason if st.blind else None,
        "last_error": None if err is None else {
            "kind": str(err.error), "evidence": err.evidence, "at": err.at},
        "source": watched.source,
        "silenced": None if silenced is None else {
            "reason": silenced.reason, "by": silenced.by, "until": silenced.until},
    }
