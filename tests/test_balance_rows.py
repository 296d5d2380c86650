"""Several balances rows per (account, asset) (SPEC 1, 7): positive rows are collateral, tiered
once on the asset's summed positive amount per account; negative rows are loans at full value,
each driving loan MM; okx_pm's MR8 reads the asset's net sum.  Binance's worked example B1
(margin account: BTC 0.1 with 0.04 borrowed, ETH 20 with 15 borrowed) entered as it is
published; a holding split into rows gives the figures of the whole holding; the Monitor's
balance updates replace every row of their (account, asset)."""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pmrisk
from pmrisk import samples

warnings.simplefilter("ignore", pmrisk.MarginWarning)

PRESETS = ["standard", "deribit_pme", "span", "binance_pm_pro", "okx_pm", "binance_um"]
# BTC tiers whose edges the demo book's holdings cross: splitting a holding into rows that
# each stay below an edge must not take it out of the lower tiers
TIERS = {"collateral": {"BTC": {"tiers_usd": [[0, 50_000, 1.0], [50_000, 80_000, 0.9],
                                              [80_000, float("inf"), 0.7]]},
                        "ETH": {"rate": 0.95}, "USDC": {"rate": 0.99}},
         "loan_mmr": 0.08}


def demo(preset):
    """Tables, valuation time and model (tiered collateral, loans) of a book with balances
    under ``preset``: the demo book, or the futures book under binance_um."""
    if preset == "binance_um":
        b = samples.futures_book(n_accounts=8)
    else:
        b = samples.demo_book()
    vt = b.pop("valuation_time")
    return b, vt, pmrisk.Model.preset(preset).with_overrides(TIERS)


def split(balances, parts=(0.5, 0.3, 0.2)):
    """Every row as ``len(parts)`` rows of the same sign (fractions ``parts`` of it), the
    rows of all of them in an interleaved order."""
    rows = balances.to_pylist()
    out = []
    for f in parts:
        out += [dict(r, amount=r["amount"] * f) for r in rows]
    return pa.Table.from_pylist(out, schema=balances.schema)


def close(a, b, rtol=1e-12):
    """Same rows and strings; floats within ``rtol`` of each column's largest magnitude."""
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for c in a.column_names:
        x, y = a[c], b[c]
        if pa.types.is_floating(x.type):
            x, y = x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False)
            fin = np.isfinite(y)
            scale = np.abs(y[fin]).max() if fin.any() else 0.0
            with np.errstate(invalid="ignore"):
                ok = (x == y) | (np.abs(x - y) <= rtol * scale) | (np.isnan(x) & np.isnan(y))
            assert ok.all(), (c, x[~ok][:3], y[~ok][:3])
        else:
            assert x.to_pylist() == y.to_pylist(), c


def acc_row(result, name):
    return next(r for r in result.accounts.to_pylist() if r["account"] == name)


# -- Binance's worked example B1: the margin account as published ------------------------------

def b1_book(balances):
    """An account ``b1`` with balances only (its MM is then the loans' MM) beside an account
    with a BTCUSDT position (binance_um margins futures; b1 holds none).  Index prices
    (chosen here: B1 publishes none for the margin account) BTC 60,000, ETH 3,000."""
    return dict(
        positions=pa.table({"account": ["other"], "symbol": ["BTCUSDT"], "quantity": [0.01]}),
        instruments=pa.table({"symbol": ["BTCUSDT"], "underlying": ["BTC"],
                              "kind": ["perpetual"], "settlement": ["linear"],
                              "contract_size": [1.0]}),
        market=pa.table({"symbol": ["BTCUSDT"], "mark_price": [60_000.0]}),
        index=pa.table({"underlying": ["BTC", "ETH"], "index_price": [60_000.0, 3_000.0]}),
        balances=pa.table({"account": ["other"] + ["b1"] * len(balances),
                           "asset": ["USDT"] + [a for a, _ in balances],
                           "amount": [1e6] + [v for _, v in balances]}),
        valuation_time="2024-06-17T08:00:00Z")


B1 = [("USDT", 1_000.0), ("BTC", 0.1), ("BTC", -0.04), ("ETH", 20.0), ("ETH", -15.0)]
B1_MODEL = pmrisk.Model.preset("binance_um").with_overrides(
    {"collateral": {"BTC": {"rate": 0.95}, "ETH": {"rate": 0.90}}})


def test_b1_margin_account_under_binance_um():
    """Research 3.6, B1: "USDT asset 1,000 loan 0 (MarginMM 0); BTC 0.1 loan 0.04 => equity
    0.06, MarginMM 0.004; ETH 20 loan 15 => equity 5, MarginMM 1.5 (10 % => 3x)".
    binance_um's 3x loan MMR is 0.10; collateral rates set here: BTC 0.95, ETH 0.90.
    loan MM = 0.10 x (0.04 x 60,000 + 15 x 3,000) = 0.004 x 60,000 + 1.5 x 3,000
            = 240 + 4,500 = 4,740 USD;
    equity (SPEC 7: positive rows at their rate, loans at full value)
            = 1,000 + 0.1 x 60,000 x 0.95 - 0.04 x 60,000 + 20 x 3,000 x 0.90 - 15 x 3,000
            = 1,000 + 5,700 - 2,400 + 54,000 - 45,000 = 13,300;
    actual equity = 1,000 + 6,000 - 2,400 + 60,000 - 45,000 = 19,600;
    MM = the loans' MM alone (no futures): uniMMR = 13,300 / 4,740."""
    r = pmrisk.margin(**b1_book(B1), model=B1_MODEL)
    a = acc_row(r, "b1")
    assert a["loan_maintenance_margin"] == pytest.approx(4_740.0, rel=1e-12)
    assert a["loan_maintenance_margin"] == pytest.approx(0.004 * 60_000 + 1.5 * 3_000,
                                                         rel=1e-12)
    assert a["maintenance_margin"] == pytest.approx(4_740.0, rel=1e-12)
    assert a["equity"] == pytest.approx(13_300.0, rel=1e-12)
    assert a["actual_equity"] == pytest.approx(19_600.0, rel=1e-12)
    assert a["margin_ratio"] == pytest.approx(13_300.0 / 4_740.0, rel=1e-12)
    assert a["status"] == "normal"
    loans = [p for p in r.positions.to_pylist() if p["account"] == "b1" and p["unit"] == "loans"]
    assert len(loans) == 1 and loans[0]["mm_contribution_usd"] == pytest.approx(4_740.0)
    # netted to 0.06 BTC and 5 ETH (what had to be entered before): no loan MM at all
    net = [("USDT", 1_000.0), ("BTC", 0.06), ("ETH", 5.0)]
    n = acc_row(pmrisk.margin(**b1_book(net), model=B1_MODEL), "b1")
    assert n["loan_maintenance_margin"] == 0.0
    assert n["equity"] == pytest.approx(1_000 + 0.06 * 60_000 * 0.95 + 5 * 3_000 * 0.90)


def test_b1_rows_in_any_order_and_split_give_the_same_figures():
    base = acc_row(pmrisk.margin(**b1_book(B1), model=B1_MODEL), "b1")
    shuffled = [B1[k] for k in (4, 1, 0, 3, 2)]
    more = [("USDT", 600.0), ("BTC", 0.07), ("ETH", -10.0), ("USDT", 400.0), ("BTC", -0.04),
            ("ETH", 20.0), ("BTC", 0.03), ("ETH", -5.0)]
    for rows in (shuffled, more):
        a = acc_row(pmrisk.margin(**b1_book(rows), model=B1_MODEL), "b1")
        for k in ("equity", "actual_equity", "maintenance_margin", "loan_maintenance_margin",
                  "margin_ratio", "max_withdrawable"):
            assert a[k] == pytest.approx(base[k], rel=1e-12), k


# -- tiers apply to the asset's summed holding, once --------------------------------------------

def test_tiers_apply_to_the_summed_positive_amount_per_account():
    """1.2 BTC at 65,000 = 78,000 USD in three rows of 0.4 BTC (26,000 each, all inside the
    first tier): the holding's value is 50,000 x 1 + 28,000 x 0.9 = 75,200, not 78,000; a
    loan row of -0.1 BTC (6,500) counts at full value beside it, and is a loan (MM 0.08 x
    6,500 = 520) although the asset's net amount is positive."""
    b, vt, m = demo("deribit_pme")
    acc = "directional"
    bal = pa.table({"account": [acc] * 4, "asset": ["BTC"] * 4,
                    "amount": [0.4, 0.4, -0.1, 0.4]})
    r = pmrisk.margin(**dict(b, balances=bal), model=m, valuation_time=vt)
    alone = pmrisk.margin(**dict(b, balances=pa.table({"account": [acc], "asset": ["BTC"],
                                                       "amount": [0.0]})),
                          model=m, valuation_time=vt)
    a, z = acc_row(r, acc), acc_row(alone, acc)
    assert a["equity"] - z["equity"] == pytest.approx(75_200.0 - 6_500.0, rel=1e-12)
    assert a["actual_equity"] - z["actual_equity"] == pytest.approx(78_000.0 - 6_500.0,
                                                                    rel=1e-12)
    assert a["loan_maintenance_margin"] == pytest.approx(520.0, rel=1e-12)
    # another account's BTC is its own holding: tiered apart
    two = pa.table({"account": [acc, "long-vol"], "asset": ["BTC", "BTC"],
                    "amount": [0.6, 0.6]})
    r2 = pmrisk.margin(**dict(b, balances=two), model=m, valuation_time=vt)
    assert acc_row(r2, acc)["equity"] - z["equity"] == pytest.approx(39_000.0, rel=1e-12)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_holding_split_into_rows_gives_the_same_figures(preset):
    """Every balance split into three rows of its sign, rows interleaved across accounts:
    accounts, units and positions tables equal the one-row book's (to 1e-12 of each
    column's scale: the rows' values are summed in another order)."""
    b, vt, m = demo(preset)
    one = pmrisk.margin(**b, model=m, valuation_time=vt)
    many = pmrisk.margin(**dict(b, balances=split(b["balances"])), model=m,
                         valuation_time=vt)
    for t in ("accounts", "units", "positions"):
        close(getattr(many, t), getattr(one, t))


def test_okx_mr8_reads_the_assets_net_amount():
    """okx_pm's MR8 (SPEC 14) is on the asset's equity, the net sum over its rows: BTC 0.1
    with a -0.04 row borrows nothing (as 0.06 in one row); 0.5 with -2.5 borrows what -2.0
    in one row does."""
    b, vt, m = demo("okx_pm")
    acc = "long-vol"                # long options: the BTC the positions settle in is positive

    def fig(rows):
        bal = pa.table({"account": [acc] * len(rows), "asset": ["BTC"] * len(rows),
                        "amount": rows})
        return acc_row(pmrisk.margin(**dict(b, balances=bal), model=m, valuation_time=vt),
                       acc)
    assert fig([0.1, -0.04])["borrow_mmr"] == 0.0
    assert fig([0.1, -0.04])["borrow_mmr"] == fig([0.06])["borrow_mmr"]
    assert fig([-2.0])["borrow_mmr"] > 0.0
    assert fig([0.5, -2.5])["borrow_mmr"] == pytest.approx(fig([-2.0])["borrow_mmr"],
                                                          rel=1e-12)
    assert fig([0.1, -0.3])["borrow_mmr"] == pytest.approx(fig([-0.2])["borrow_mmr"],
                                                          rel=1e-12)


def test_timed_balances_take_several_rows_per_time():
    """With a time column, the rows of one (account, asset, time) are summed as above, per
    snapshot: the history's balances split into two rows each give its figures."""
    h = samples.history(days=1, accounts=4, step_minutes=360)
    args = (h["positions"], h["instruments"], h["market"], h["index"])
    one = pmrisk.margin(*args, balances=h["balances"], model="deribit_pme")
    many = pmrisk.margin(*args, balances=split(h["balances"], (0.25, 0.75)),
                         model="deribit_pme")
    close(many.accounts, one.accounts)
    bt = pmrisk.backtest(*args, split(h["balances"], (0.25, 0.75)), model="deribit_pme",
                         progress=False)
    close(bt.accounts, one.accounts)


# -- the Monitor: an update's rows for an (account, asset) replace all of that key's rows ------

def _state_balances(mon, acc):
    t = mon.state()["balances"]
    t = t.filter(pc.equal(t["account"], acc))
    return sorted(zip(t["asset"].to_pylist(), t["amount"].to_pylist()))


def _matches_margin(mon, model):
    ref = pmrisk.margin(**mon.state(), model=model)
    for name in ("accounts", "units", "positions"):
        keys = ["account", "unit", "symbol"] if name == "positions" else \
            ["account", "unit"] if name == "units" else ["account"]
        a = getattr(mon, name).sort_by([(k, "ascending") for k in keys])
        b = getattr(ref, name).sort_by([(k, "ascending") for k in keys])
        assert a.equals(b), name


def test_monitor_balance_updates_replace_every_row_of_their_key():
    b, vt, m = demo("deribit_pme")
    b["balances"] = pa.table({
        "account": ["directional", "directional", "directional", "long-vol"],
        "asset": ["BTC", "BTC", "USDC", "BTC"], "amount": [0.8, 0.4, -500.0, 1.0]})
    mon = pmrisk.Monitor(**b, model=m, valuation_time=vt)
    _matches_margin(mon, m)
    # one row for a key of two rows: it replaces both
    mon.update(balances={"account": ["directional"], "asset": ["BTC"], "amount": [1.5]})
    assert _state_balances(mon, "directional") == [("BTC", 1.5), ("USDC", -500.0)]
    _matches_margin(mon, m)
    # two rows for one key in one update: they become the key's rows (other keys untouched)
    mon.update(balances={"account": ["directional", "directional"], "asset": ["BTC", "BTC"],
                         "amount": [1.0, -0.2]})
    assert _state_balances(mon, "directional") == [("BTC", -0.2), ("BTC", 1.0),
                                                   ("USDC", -500.0)]
    _matches_margin(mon, m)
    a = next(r for r in mon.accounts.to_pylist() if r["account"] == "directional")
    assert a["loan_maintenance_margin"] == pytest.approx(0.08 * (0.2 * 65_000 + 500.0))
    # a tick moves every row of the asset, to the bit as margin() on the state
    mon.update(index={"underlying": ["BTC"], "index_price": [61_000.0]})
    _matches_margin(mon, m)
    # a row of 0 removes the key's rows; zeros beside other rows of the key are dropped
    mon.update(balances={"account": ["directional", "long-vol", "long-vol"],
                         "asset": ["BTC", "BTC", "BTC"], "amount": [0.0, 0.0, 0.3]})
    assert _state_balances(mon, "directional") == [("USDC", -500.0)]
    assert _state_balances(mon, "long-vol") == [("BTC", 0.3)]
    _matches_margin(mon, m)


def test_what_if_and_liquidation_on_split_balances():
    """A fill's cash goes to the first row of its currency with a positive amount: the
    what-if's states equal margin() on the state with that row moved; a liquidation plan
    runs on split rows."""
    b, vt, m = demo("deribit_pme")
    b["balances"] = pa.table({
        "account": ["directional", "directional", "directional"],
        "asset": ["BTC", "BTC", "BTC"], "amount": [-0.3, 0.8, 0.7]})
    mon = pmrisk.Monitor(**b, model=m, valuation_time=vt)
    w = mon.what_if("directional", {"symbol": ["BTC-28JUN24-56000-P"], "quantity": [1.0],
                                    "price": [0.01]})
    before = acc_row(pmrisk.margin(**mon.state(), model=m), "directional")
    for k in ("maintenance_margin", "equity", "loan_maintenance_margin"):
        assert w.figure("before", k) == pytest.approx(before[k], rel=1e-12), k
    # bought for 0.01 BTC: the 0.8 row pays it (the loan row stays a loan of 0.3)
    pos = b["positions"].to_pylist()
    for r in pos:
        if r["account"] == "directional" and r["symbol"] == "BTC-28JUN24-56000-P":
            r["quantity"] += 1.0
    after = dict(b, positions=pa.Table.from_pylist(pos, schema=b["positions"].schema),
                 balances=pa.table({"account": ["directional"] * 3, "asset": ["BTC"] * 3,
                                    "amount": [-0.3, 0.8 - 0.01, 0.7]}))
    ref = acc_row(pmrisk.margin(**after, model=m, valuation_time=vt), "directional")
    assert w.figure("after", "maintenance_margin") == pytest.approx(ref["maintenance_margin"],
                                                                    rel=1e-12)
    assert w.figure("after", "equity") == pytest.approx(ref["equity"], rel=1e-12)
    assert w.figure("after", "loan_maintenance_margin") == pytest.approx(
        ref["loan_maintenance_margin"], rel=1e-12)
    plan = pmrisk.liquidation_plan(**dict(b, balances=pa.table({
        "account": ["nearly-liquidated"] * 2, "asset": ["BTC"] * 2, "amount": [2.0, -1.5]})),
        model=m, valuation_time=vt)
    assert plan.num_rows >= 1
