"""The consistency check `consistent_with_deliveries` (replay of the delivered files in delivery
order, compared with the warehouse) on each case of issue 16: it passes with the fix and fails
when the file sequence is what the code produced before the fix (R11, R12, issue 22 item 5)."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from delivery_platform.vendors.lotame import assets, state
from delivery_platform.vendors.lotame.assets import LotameSettings
from delivery_platform.warehouse.resource import copy_to_parquet
from delivery_platform_tests.warehouses import table_warehouse

D1, D2, D3 = "2026-11-10", "2026-11-11", "2026-11-12"


def m(userid, segment, start, end=None):
    return {
        "userid": userid,
        "segment": segment,
        "valid_from": start,
        "valid_to": end,
        "last_seen_at": "2026-11-09 12:00:00",
    }


@pytest.fixture
def lotame(tmp_path):
    """A: {x,y} -> {y} -> {y,w}; B: {x} -> {} (leaves everything) -> {x}; C: {} -> {z} -> {}."""
    users = [{"userid": u, "idtype": "PANO", "consent": True, "country": "US"} for u in "ABC"]
    rows = [
        m("A", "x", D1, D2),
        m("A", "y", D1),
        m("A", "w", D3),
        m("B", "x", D1, D2),
        m("B", "x", D3),
        m("C", "z", D2, D3),
    ]
    path = table_warehouse(tmp_path / "w.duckdb", {"lotame_users": users, "lotame_segment_memberships": rows})
    con = duckdb.connect(str(path))
    yield Builder(con, tmp_path)
    con.close()


class Builder:
    """Builds records files with the production SQL, against a chosen base (what the code thinks
    Lotame holds), the way the fixed or the reverted code would."""

    def __init__(self, con, folder):
        self.con, self.folder, self.n, self.settings = con, folder, 0, LotameSettings()

    def truth(self, day):
        path = self.folder / f"truth-{day}.parquet"
        copy_to_parquet(self.con, assets.full_state_sql(day, self.settings.id_types), path)
        return path

    def file(self, day, mode, base_sql=state.EMPTY_HELD):
        self.n += 1
        path = self.folder / f"rec-{self.n}.parquet"
        sql = assets.comprehensive_records_sql if mode == "comprehensive" else assets.delta_records_sql
        copy_to_parquet(self.con, sql(self.truth(day), base_sql, self.settings), path)
        return mode, path

    def held(self, files):
        """What Lotame holds after `files`, as SQL (the fixed code's base)."""
        state.replay(self.con, files, "base")
        path = self.folder / f"held-{self.n}.parquet"
        copy_to_parquet(self.con, "SELECT * FROM base", path)
        return f"SELECT * FROM read_parquet('{path}')"

    def state_of(self, day):
        """The previous partition's full state (the reverted code's base for deltas)."""
        return f"SELECT userid, segment FROM read_parquet('{self.truth(day)}')"

    def check(self, files, day):
        """The check's verdict: passed, and the missing/extra counts."""
        state.replay(self.con, files)
        found = state.compare(self.con, "replayed", f"SELECT * FROM read_parquet('{self.truth(day)}')")
        result = assets.consistency_result(found, len(files), D1)
        return result.passed, found["missing"] + found["extra"], result.description


def test_r11_an_id_that_left_every_segment_is_cleared(lotame):
    day1 = lotame.file(D1, "comprehensive")
    fixed = [day1, lotame.file(D2, "comprehensive", lotame.held([day1]))]
    reverted = [day1, lotame.file(D2, "comprehensive")]  # before: only IDs with live segments
    assert lotame.check(fixed, D2)[0]
    passed, wrong, text = lotame.check(reverted, D2)
    assert not passed and wrong == 1 and "B x" in text  # B keeps x at Lotame


def test_r12_a_failed_day_the_next_delta_builds_on_what_was_received(lotame):
    day1 = lotame.file(D1, "comprehensive")  # D2 failed: never delivered
    fixed = [day1, lotame.file(D3, "delta", lotame.held([day1]))]
    reverted = [day1, lotame.file(D3, "delta", lotame.state_of(D2))]  # before: against the previous partition
    assert lotame.check(fixed, D3)[0]
    assert not lotame.check(reverted, D3)[0]


def test_r12_an_old_day_resent_after_a_later_delta(lotame):
    day1 = lotame.file(D1, "comprehensive")
    day2 = lotame.file(D2, "delta", lotame.held([day1]))
    day3 = lotame.file(D3, "delta", lotame.held([day1, day2]))
    assert lotame.check([day1, day2, day3], D3)[0]
    assert not lotame.check([day1, day2, day3, day2], D3)[0]  # before: the stale delta went out again
    history = [
        state.Delivered(d, mode, "", i)
        for i, (d, mode) in enumerate([(D1, "comprehensive"), (D2, "delta"), (D3, "delta")])
    ]
    with pytest.raises(dg.Failure, match=f"refused: Lotame already received the file for {D3}"):
        assets.refuse_old_day(history, D2)  # now: refused before anything is built


def test_22_5_parallel_days_the_later_one_published_first(lotame):
    day1 = lotame.file(D1, "comprehensive")
    day2 = lotame.file(D2, "delta", lotame.held([day1]))
    day3_fixed = lotame.file(D3, "delta", lotame.held([day1, day2]))  # waited for D2 (the chain)
    day3_racing = lotame.file(D3, "delta", lotame.held([day1]))  # before: computed against D1 too
    assert lotame.check([day1, day2, day3_fixed], D3)[0]
    assert not lotame.check([day1, day3_racing, day2], D3)[0]
