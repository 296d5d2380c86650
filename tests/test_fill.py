"""``fill_market="forward"``: a held symbol's last market row (an underlying's last index
row) carried forward to later snapshot times where it has none; never backward."""

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pmrisk
from pmrisk import samples
from pmrisk.io.fill import advance_carry, forward_fill

B = samples.demo_book()
TS = pa.timestamp("ns", tz="UTC")
T1, T15, T2 = "2024-06-17T08:00:00Z", "2024-06-17T20:00:00Z", "2024-06-18T08:00:00Z"
PERP = "BTC-PERPETUAL"


def at(table, t):
    return table.add_column(0, "time", pa.array([t] * table.num_rows).cast(TS))


def moved(table, factor, cols):
    for c in cols:
        table = table.set_column(table.column_names.index(c), c, pc.multiply(table[c], factor))
    return table


def market_x(f):
    return moved(B["market"], f, ("mark_price", "underlying_price"))


def index_x(f):
    return moved(B["index"], f, ("index_price",))


def without(table, col, value):
    return table.filter(pc.not_equal(table[col], value))


def only(table, col, value):
    return table.filter(pc.equal(table[col], value))


def snapshot(result, name, t):
    table = getattr(result, name)
    return table.filter(pc.equal(table["time"], pa.scalar(t).cast(TS))).drop_columns(["time"])


def two_times(market2, index2):
    positions = pa.concat_tables([at(B["positions"], T1), at(B["positions"], T2)])
    market = pa.concat_tables([at(B["market"], T1), at(market2, T2)])
    index = pa.concat_tables([at(B["index"], T1), at(index2, T2)])
    return positions, market, index


def run(positions, market, index, **kw):
    return pmrisk.margin(positions, B["instruments"], market, index, balances=B["balances"],
                         open_orders=B["open_orders"], **kw)


def expected_at_t2(market2, index2):
    return pmrisk.margin(B["positions"], B["instruments"], market2, index2,
                         balances=B["balances"], open_orders=B["open_orders"],
                         valuation_time=T2)


def test_missing_mark_is_carried_forward_from_the_last_row():
    m2 = without(market_x(1.05), "symbol", PERP)
    positions, market, index = two_times(m2, index_x(1.05))
    with pytest.raises(pmrisk.MarginError) as e:
        run(positions, market, index)
    assert PERP in str(e.value) and e.value.time.startswith("2024-06-18T08:00:00")
    r = run(positions, market, index, fill_market="forward")
    want = expected_at_t2(pa.concat_tables([m2, only(B["market"], "symbol", PERP)]),
                          index_x(1.05))
    for name in ("accounts", "units", "positions"):
        assert snapshot(r, name, T2).equals(getattr(want, name)), name
    first = run(positions.slice(0, B["positions"].num_rows), market, index)
    assert snapshot(r, "accounts", T1).equals(snapshot(first, "accounts", T1))


def test_missing_index_row_is_carried_forward():
    i2 = without(index_x(1.05), "underlying", "ETH")
    positions, market, index = two_times(market_x(1.05), i2)
    with pytest.raises(pmrisk.MarginError, match="ETH"):
        run(positions, market, index)
    r = run(positions, market, index, fill_market="forward")
    want = expected_at_t2(market_x(1.05),
                          pa.concat_tables([i2, only(B["index"], "underlying", "ETH")]))
    assert snapshot(r, "accounts", T2).equals(want.accounts)


def test_the_latest_earlier_row_wins_even_between_snapshots():
    """A market row at a time that is no snapshot (T1.5) is the latest before T2."""
    m2 = without(market_x(1.05), "symbol", PERP)
    positions, market, index = two_times(m2, index_x(1.05))
    mid = at(only(market_x(1.02), "symbol", PERP), T15)
    r = run(positions, pa.concat_tables([market, mid]), index, fill_market="forward")
    want = expected_at_t2(pa.concat_tables([m2, only(market_x(1.02), "symbol", PERP)]),
                          index_x(1.05))
    assert snapshot(r, "accounts", T2).equals(want.accounts)


def test_never_backward():
    """Missing at the first snapshot, present later: still the error, naming symbol and
    time."""
    positions, market, index = two_times(market_x(1.05), index_x(1.05))
    market = pa.concat_tables([at(without(B["market"], "symbol", PERP), T1),
                               at(market_x(1.05), T2)])
    with pytest.raises(pmrisk.MarginError) as e:
        run(positions, market, index, fill_market="forward")
    assert PERP in str(e.value) and e.value.time.startswith("2024-06-17T08:00:00")


def test_nothing_missing_changes_nothing():
    positions, market, index = two_times(market_x(1.05), index_x(1.05))
    a = run(positions, market, index)
    b = run(positions, market, index, fill_market="forward")
    for name in ("accounts", "units", "positions"):
        assert getattr(a, name).equals(getattr(b, name)), name


def test_untimed_positions_over_a_timed_market():
    """Snapshots are the market's times; a symbol missing at the later one is filled."""
    market = pa.concat_tables([at(B["market"], T1),
                               at(without(market_x(1.05), "symbol", PERP), T2)])
    index = pa.concat_tables([at(B["index"], T1), at(index_x(1.05), T2)])
    r = pmrisk.margin(B["positions"], B["instruments"], market, index,
                      balances=B["balances"], fill_market="forward")
    assert r.timings["snapshots"] == 2
    mk = pa.concat_tables([without(market_x(1.05), "symbol", PERP),
                           only(B["market"], "symbol", PERP)])
    want = pmrisk.margin(B["positions"], B["instruments"], mk, index_x(1.05),
                         balances=B["balances"], valuation_time=T2)
    assert snapshot(r, "accounts", T2).equals(want.accounts)


def test_bad_mode_and_duplicate_rows_are_margin_errors():
    positions, market, index = two_times(market_x(1.05), index_x(1.05))
    with pytest.raises(pmrisk.MarginError) as e:
        run(positions, market, index, fill_market="ffill")
    assert e.value.column == "fill_market"
    dup = pa.concat_tables([market, at(only(B["market"], "symbol", PERP), T15),
                            at(only(B["market"], "symbol", PERP), T15)])
    with pytest.raises(pmrisk.MarginError) as e:
        run(positions, dup, index, fill_market="forward")
    assert e.value.table == "market" and PERP in str(e.value)


def test_a_carry_fills_like_the_whole_history():
    """Streaming: filling the second half with the first half's carry gives the rows that
    filling the whole history gives."""
    positions, market, index = two_times(without(market_x(1.05), "symbol", PERP),
                                         without(index_x(1.05), "underlying", "ETH"))
    whole = forward_fill({"positions": positions, "market": market, "index": index})
    first = {"market": at(B["market"], T1), "index": at(B["index"], T1)}
    carry = advance_carry(None, first)
    assert carry["market"].num_rows == B["market"].num_rows
    half = forward_fill({"positions": at(B["positions"], T2),
                         "market": market.slice(B["market"].num_rows),
                         "index": index.slice(B["index"].num_rows)}, carry)
    t2 = pa.scalar(T2).cast(TS)
    for name in ("market", "index"):
        got = whole[name].filter(pc.equal(whole[name]["time"], t2))
        assert got.equals(half[name]), name
