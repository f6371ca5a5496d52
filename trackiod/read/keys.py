"""The keys a run logged (the ``run_keys`` index), read by history, the CLI, sync and the tests' rigs."""

from __future__ import annotations

import apsw


def run_keys(conn: apsw.Connection, run_id: int) -> dict[str, tuple[int, str, int]]:
    """``{name: (key_id, kind, points)}`` for every key a run logged."""
    return {
        name: (key_id, kind, points)
        for name, key_id, kind, points in conn.execute(
            "SELECT k.name, k.id, rk.kind, rk.points FROM run_keys rk JOIN keys k ON k.id = rk.key_id "
            "WHERE rk.run_id=? ORDER BY k.name",
            (run_id,),
        )
    }
