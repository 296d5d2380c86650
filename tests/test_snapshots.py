"""The optional ``time`` column (SPEC §1): each distinct time is a separate snapshot."""

import numpy as np
import pyarrow as pa
import pytest

import pmrisk
from pmrisk import samples

B = samples.demo_book()
T1, T2 = "2024-06-17T08:00:00Z", "2024-06-18T08:00:00Z"


def with_time(table, t):
    return table.add_column(0, "time", pa.array([t] * table.num_rows).cast(
        pa.timestamp("ns", tz="UTC")))


def moved(table, factor, cols=("mark_price",)):
    for c in cols:
        i = table.column_names.index(c)
        table = table.set_column(i, c, pa.compute.multiply(table[c], factor))
    return table


def market2():
    return moved(B["market"], 1.05, ("mark_price", "underlying_price"))


def index2():
    return moved(B["index"], 1.05, ("index_price",))


def test_two_snapshots_equal_two_calls():
    pos2 = B["positions"].slice(0, 9)
    positions = pa.concat_tables([with_time(B["positions"], T1), with_time(pos2, T2)])
    market = pa.concat_tables([with_time(B["market"], T1), with_time(market2(), T2)])
    index = pa.concat_tables([with_time(B["index"], T1), with_time(index2(), T2)])
    r = pmrisk.margin(positions, B["instruments"], market, index, balances=B["balances"])
    a = pmrisk.margin(B["positions"], B["instruments"], B["market"], B["index"],
                      balances=B["balances"], valuation_time=T1)
    b = pmrisk.margin(pos2, B["instruments"], market2(), index2(), balances=B["balances"],
                      valuation_time=T2)
    for name in ("accounts", "units", "positions"):
        got = getattr(r, name)
        assert got.column_names[:2] == ["account", "time"]
        times = got["time"].cast(pa.int64()).to_numpy()
        t1 = pa.scalar(T1).cast(pa.timestamp("ns", tz="UTC")).value
        first = got.filter(pa.array(times == t1)).drop_columns(["time"])
        second = got.filter(pa.array(times != t1)).drop_columns(["time"])
        assert first.equals(getattr(a, name)), name
        assert second.equals(getattr(b, name)), name
    assert r.timings["snapshots"] == 2


def test_static_positions_valued_at_every_market_time():
    market = pa.concat_tables([with_time(B["market"], T1), with_time(market2(), T2)])
    index = pa.concat_tables([with_time(B["index"], T1), with_time(index2(), T2)])
    r = pmrisk.margin(B["positions"], B["instruments"], market, index, risk_vectors=True)
    assert r.accounts.num_rows == 2 * 6
    assert set(r.risk_vectors["time"].cast(pa.int64()).to_pylist()) == {
        pa.scalar(t).cast(pa.timestamp("ns", tz="UTC")).value for t in (T1, T2)}


def test_missing_market_row_at_a_time_names_symbol_and_time():
    positions = pa.concat_tables([with_time(B["positions"], T1),
                                  with_time(B["positions"], T2)])
    mk2 = market2().filter(pa.compute.not_equal(B["market"]["symbol"], "BTC-PERPETUAL"))
    market = pa.concat_tables([with_time(B["market"], T1), with_time(mk2, T2)])
    index = pa.concat_tables([with_time(B["index"], T1), with_time(index2(), T2)])
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(positions, B["instruments"], market, index)
    msg = str(e.value)
    assert "BTC-PERPETUAL" in msg and "2024-06-18T08:00:00" in msg
    assert e.value.table == "positions" and e.value.time.startswith("2024-06-18T08:00:00")


def test_valuation_time_with_time_column_is_an_error():
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(with_time(B["positions"], T1), B["instruments"], B["market"],
                      B["index"], valuation_time=T1)
    assert e.value.column == "valuation_time"


def test_null_time_is_an_error():
    pos = with_time(B["positions"], T1)
    t = pos["time"].to_pylist()
    t[3] = None
    pos = pos.set_column(0, "time", pa.array(t, pa.timestamp("ns", tz="UTC")))
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(pos, B["instruments"], B["market"], B["index"])
    assert e.value.table == "positions" and e.value.column == "time"


def test_snapshot_times_change_time_to_expiry():
    """The same option book a week later has less time value (valued at each time)."""
    pos = pa.table({"account": ["a"], "symbol": ["BTC-27SEP24-77000-C"], "quantity": [1.0]})
    positions = pa.concat_tables([with_time(pos, T1),
                                  with_time(pos, "2024-09-20T08:00:00Z")])
    r = pmrisk.margin(positions, B["instruments"], B["market"], B["index"])
    mv = np.asarray(r.positions.filter(pa.compute.equal(r.positions["symbol"],
                                                         "BTC-27SEP24-77000-C"))["model_value"])
    assert mv[0] > mv[1] > 0


def test_balances_at_a_time_without_positions_are_a_snapshot():
    """An account flat at T2 but holding balances is still margined at T2 (not dropped)."""
    positions = with_time(B["positions"], T1)
    balances = pa.concat_tables([with_time(B["balances"], T1), with_time(B["balances"], T2)])
    market = pa.concat_tables([with_time(B["market"], T1), with_time(market2(), T2)])
    index = pa.concat_tables([with_time(B["index"], T1), with_time(index2(), T2)])
    r = pmrisk.margin(positions, B["instruments"], market, index, balances=balances)
    t2 = r.accounts.filter(pa.compute.equal(
        r.accounts["time"], pa.scalar(T2).cast(pa.timestamp("ns", tz="UTC"))))
    assert t2.num_rows == 6
    assert (np.asarray(t2["maintenance_margin"]) == 0).all()
    assert (np.asarray(t2["equity"]) > 0).all()


def test_misaligned_balances_do_not_vanish():
    """Balances one second after the positions form their own snapshot: the positions'
    snapshot has no balances (equity from positions only), the later one has them."""
    t1b = "2024-06-17T08:00:01Z"
    r = pmrisk.margin(with_time(B["positions"], T1), B["instruments"], B["market"],
                      B["index"], balances=with_time(B["balances"], t1b))
    assert r.timings["snapshots"] == 2
    assert r.accounts.num_rows == 12


@pytest.mark.parametrize("values", [pa.array([1, 2]), pa.array([1.5, 2.5]),
                                    pa.array([0, 1], pa.date32())])
def test_time_column_of_the_wrong_type_is_a_margin_error(values):
    pos = pa.table({"time": values.take(pa.array([0, 0])), "account": ["a", "b"],
                    "symbol": ["BTC-PERPETUAL", "BTC-PERPETUAL"], "quantity": [1.0, 2.0]})
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(pos, B["instruments"], B["market"], B["index"])
    assert e.value.table == "positions" and e.value.column == "time"


def test_timed_inputs_with_no_rows_give_empty_tables_with_time():
    pos = with_time(B["positions"], T1).slice(0, 0)
    r = pmrisk.margin(pos, B["instruments"], B["market"], B["index"])
    plain = pmrisk.margin(B["positions"].slice(0, 0), B["instruments"], B["market"],
                          B["index"], valuation_time=T1)
    for name in ("accounts", "units", "positions"):
        t = getattr(r, name)
        assert t.num_rows == 0
        assert t.column_names == ["account", "time"] + getattr(plain, name).column_names[1:]


def test_risk_arrays_reject_a_time_column():
    pos = pa.table({"time": pa.array([0]).cast(pa.timestamp("ns", tz="UTC")),
                    "account": ["a"], "symbol": ["F"], "quantity": [1.0]})
    ra = {"symbol": ["F"] * 16, "scenario": list(range(16)), "pnl": [0.0] * 16}
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin_from_risk_arrays(pos, ra, model="span")
    assert e.value.column == "time"


# -- one pass over every snapshot == one engine pass per snapshot ------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pmrisk.engine.margin import margin_per_snapshot  # noqa: E402

TS = pa.timestamp("ns", tz="UTC")


def _history(seed, n_times, timed_balances, static_market, drop):
    rng = np.random.default_rng(seed)
    t0 = pa.scalar(T1).cast(TS).value
    times = [t0 + k * 3_600 * 10**9 for k in range(n_times)]
    pos_parts, mkt_parts, idx_parts, bal_parts = [], [], [], []
    for t in times:
        keep = rng.random(B["positions"].num_rows) > drop
        p = B["positions"].filter(pa.array(keep))
        q = np.asarray(p["quantity"]) * rng.uniform(0.5, 1.5, p.num_rows)
        p = p.set_column(p.column_names.index("quantity"), "quantity", pa.array(q))
        pos_parts.append(with_time(p, pa.scalar(t, TS)))
        f = 1.0 + 0.02 * rng.normal()
        mkt_parts.append(with_time(moved(B["market"], f, ("mark_price", "underlying_price")),
                                   pa.scalar(t, TS)))
        idx_parts.append(with_time(moved(B["index"], f, ("index_price",)), pa.scalar(t, TS)))
        bal_parts.append(with_time(moved(B["balances"], rng.uniform(0.5, 1.5), ("amount",)),
                                   pa.scalar(t, TS)))
    positions = pa.concat_tables(pos_parts)
    # rows in any order (newest first, interleaved): the result is ordered by snapshot
    positions = positions.take(pa.array(rng.permutation(positions.num_rows)))
    # a reserve on a unit type the account does not trade (ETH/ETH for a linear ETH book)
    reserves = pa.table({"account": ["linear-pair", "directional"],
                         "unit": ["ETH/ETH", "BTC/BTC"], "mmp_margin": [0.5, 0.1],
                         "open_orders_margin": [0.0, 0.2]})
    return dict(
        positions=positions, instruments=B["instruments"],
        market=B["market"] if static_market else pa.concat_tables(mkt_parts),
        index=B["index"] if static_market else pa.concat_tables(idx_parts),
        balances=pa.concat_tables(bal_parts) if timed_balances else B["balances"],
        open_orders=B["open_orders"], reserves=reserves)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n_times=st.integers(1, 4), timed_balances=st.booleans(),
       static_market=st.booleans(), drop=st.sampled_from([0.0, 0.3, 0.9]),
       model=st.sampled_from(["deribit_pme", "standard", "span"]))
def test_one_pass_equals_a_pass_per_snapshot(seed, n_times, timed_balances, static_market,
                                             drop, model):
    h = _history(seed, n_times, timed_balances, static_market, drop)
    one = pmrisk.margin(**h, model=model, risk_vectors="positions")
    ref = margin_per_snapshot(**h, model=model, risk_vectors="positions")
    for name in ("accounts", "units", "positions", "unit_risk_vectors",
                 "position_risk_vectors"):
        a, b = getattr(one, name), getattr(ref, name)
        assert a.column_names == b.column_names, name
        assert a.num_rows == b.num_rows, name
        for c in a.column_names:
            x, y = a[c], b[c]
            if pa.types.is_floating(x.type):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12,
                                           atol=1e-12, err_msg=f"{name}.{c}")
            else:
                assert x.equals(y), f"{name}.{c}"


def test_review_findings_on_timed_inputs():
    """expired_positions='ignore' with a missing market row is a MarginError (not an
    IndexError); errors across several snapshots name the first one's rows and time, rows
    carry their time; a timestamp outside the ns range is a MarginError; repr with only the
    accounts table; tables=None is a MarginError."""
    ign = pmrisk.Model.preset("deribit_pme").with_overrides({"expired_positions": "ignore"})
    t_late = "2024-06-29T08:00:00Z"
    pos = with_time(pa.table({"account": ["a", "b", "c"],
                              "symbol": ["BTC-28JUN24-65000-C", "ETH-PERPETUAL",
                                         "BTC-PERPETUAL"],
                              "quantity": [1.0, 1.0, 1.0]}), t_late)
    mkt = with_time(B["market"].filter(pa.compute.not_equal(B["market"]["symbol"],
                                                            "ETH-PERPETUAL")), t_late)
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(pos, B["instruments"], mkt, B["index"], model=ign)
    assert e.value.rows == [("b", "ETH-PERPETUAL", "2024-06-29T08:00:00Z")]
    # index missing ETH at T2 and BTC at a third time: only T2's underlying is named
    t3 = "2024-06-19T08:00:00Z"
    positions = pa.concat_tables([with_time(B["positions"], t) for t in (T1, T2, t3)])
    market = pa.concat_tables([with_time(B["market"], t) for t in (T1, T2, t3)])
    eth = pa.compute.equal(B["index"]["underlying"], "ETH")
    index = pa.concat_tables([with_time(B["index"], T1),
                              with_time(B["index"].filter(pa.compute.invert(eth)), T2),
                              with_time(B["index"].filter(eth), t3)])
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(positions, B["instruments"], market, index)
    assert e.value.rows == [("ETH",)] and e.value.time.startswith("2024-06-18T08:00:00")
    far = B["positions"].add_column(0, "time", pa.array([10**17] * B["positions"].num_rows,
                                                        pa.timestamp("us", tz="UTC")))
    with pytest.raises(pmrisk.MarginError) as e:
        pmrisk.margin(far, B["instruments"], B["market"], B["index"])
    assert e.value.table == "positions" and e.value.column == "time"
    r = pmrisk.margin(**B, tables=("accounts",))
    assert repr(r) == "MarginResult(accounts=6 rows)"
    with pytest.raises(pmrisk.MarginError):
        pmrisk.margin(**B, tables=None)


@pytest.mark.parametrize("time", [np.int64(1718697600 * 10**9), 1718697600 * 10**9,
                                  np.datetime64("2024-06-18T08:00:00", "s")])
def test_margin_error_time_is_part_of_the_message_and_survives_pickling(time):
    import pickle
    plain = pmrisk.MarginError("market", "symbol", "a row for every symbol held",
                               rows=[("a1", "BTC-PERPETUAL")], keys=("account", "symbol"),
                               n_bad=7, hint="Add its row")
    timed = pmrisk.MarginError("market", "symbol", "a row for every symbol held",
                               rows=[("a1", "BTC-PERPETUAL")], keys=("account", "symbol"),
                               n_bad=7, hint="Add its row", time=time)
    assert plain.time is None
    assert timed.time == "2024-06-18T08:00:00Z"
    assert str(timed) == f"{plain} [snapshot time 2024-06-18T08:00:00Z]"
    assert str(plain.at_time(time)) == str(timed) and plain.at_time(time).rows == plain.rows
    back = pickle.loads(pickle.dumps(timed))
    assert (type(back), str(back), back.time, back.table, back.column, back.rows) == (
        pmrisk.MarginError, str(timed), timed.time, "market", "symbol", [("a1", "BTC-PERPETUAL")])


@pytest.mark.parametrize("timed, basis", [
    ([], []),
    (["instruments"], []),
    (["market", "index"], ["market", "index"]),
    (["market", "balances", "index", "positions"], ["balances", "positions"]),
    (["reserves", "instruments"], ["reserves"]),
])
def test_snapshot_times_come_from_account_state_else_every_timed_table(timed, basis):
    from pmrisk.io.schema import snapshot_tables
    assert snapshot_tables(timed) == basis
