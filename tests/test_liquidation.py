"""Liquidation plan (SPEC §8): orders cancelled first, the smallest reductions that restore the
target ratio, each step equal to a fresh margin call on the reduced book (replayed here with
SPEC §2's formulas, independently of the module), equity preserved at the mark."""

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings

import pmrisk
from books import books
from pmrisk import samples
from pmrisk.engine.liquidation import liquidation_plan

DM = "deribit_pme"    # the model these cases were engineered for (the default is standard)

DEMO = samples.demo_book()
TIME = DEMO["valuation_time"]
LIQ = "nearly-liquidated"

# the demo universe plus a linear option and a spot instrument
EXTRA_INSTR = pa.Table.from_pylist([
    dict(symbol="BTC_USDC-28JUN24-70000-C", underlying="BTC", kind="option",
         settlement="linear", contract_size=0.01,
         expiry=pa.scalar("2024-06-28T08:00:00Z").cast(pa.timestamp("ns", tz="UTC")),
         strike=70000.0, option_type="call"),
    dict(symbol="BTC_USDC", underlying="BTC", kind="spot", settlement="linear",
         contract_size=1.0, expiry=None, strike=None, option_type=None),
], schema=DEMO["instruments"].schema)
EXTRA_MARKET = pa.Table.from_pylist([
    dict(symbol="BTC_USDC-28JUN24-70000-C", mark_price=600.0, mark_iv=0.6,
         underlying_price=65400.0),
    dict(symbol="BTC_USDC", mark_price=65010.0, mark_iv=None, underlying_price=None),
], schema=DEMO["market"].schema)
INSTRUMENTS = pa.concat_tables([DEMO["instruments"], EXTRA_INSTR])
MARKET = pa.concat_tables([DEMO["market"], EXTRA_MARKET])
INDEX = DEMO["index"]

POS_SCHEMA = pa.schema([("account", pa.string()), ("symbol", pa.string()),
                        ("quantity", pa.float64()), ("entry_price", pa.float64())])
BAL_SCHEMA = pa.schema([("account", pa.string()), ("asset", pa.string()),
                        ("amount", pa.float64())])


# -- helpers: books as row lists, and an independent replay of a plan ---------------------

def book(positions, balances, open_orders=None, **kw):
    """Input tables from rows ``(account, symbol, qty[, entry])`` and ``(account, asset,
    amount)``."""
    pos = pa.Table.from_pylist(
        [dict(account=r[0], symbol=r[1], quantity=float(r[2]),
              entry_price=r[3] if len(r) > 3 else None) for r in positions], schema=POS_SCHEMA)
    bal = pa.Table.from_pylist([dict(account=a, asset=s, amount=float(x))
                                for a, s, x in balances], schema=BAL_SCHEMA)
    out = dict(positions=pos, instruments=INSTRUMENTS, market=MARKET, index=INDEX,
               balances=bal, valuation_time=TIME)
    if open_orders is not None:
        out["open_orders"] = open_orders
    out.update(kw)
    return out


def demo_with_balance(btc, extra_orders=None):
    """The demo book with the nearly-liquidated account's BTC balance set to ``btc``."""
    bal = DEMO["balances"]
    amt = [btc if a == LIQ else x for a, x in zip(bal["account"].to_pylist(),
                                                  bal["amount"].to_pylist())]
    oo = DEMO["open_orders"]
    if extra_orders is not None:
        oo = pa.concat_tables([oo, extra_orders])
    return dict(positions=DEMO["positions"], instruments=DEMO["instruments"],
                market=DEMO["market"], index=INDEX,
                balances=bal.set_column(2, "amount", pa.array(amt, pa.float64())),
                open_orders=oo, valuation_time=TIME)


_INSTR = {r["symbol"]: r for r in INSTRUMENTS.to_pylist()}
_MARK = {r["symbol"]: r["mark_price"] for r in MARKET.to_pylist()}


def realised(symbol, qty_removed, entry, model):
    """(asset, amount) that reducing a position by ``qty_removed`` (signed, the part taken
    away) moves into the balances, from SPEC §2: the value of that part at the mark."""
    ins, mark = _INSTR[symbol], _MARK[symbol]
    inverse = ins["settlement"] == "inverse"
    asset = ins["underlying"] if inverse else model["linear_settlement_currency"]
    cs = ins["contract_size"]
    if ins["kind"] in ("option", "spot"):
        return asset, qty_removed * cs * mark
    if entry is None:
        return asset, 0.0
    if inverse:
        return asset, qty_removed * cs * (1.0 / entry - 1.0 / mark)
    return asset, qty_removed * cs * (mark - entry)


class Replay:
    """Applies plan rows to row lists of the inputs; ``tables()`` gives the reduced book."""

    def __init__(self, inputs, model=None):
        self.inputs = inputs
        self.model = pmrisk.Model.coerce(model)
        self.pos = inputs["positions"].to_pylist()
        self.bal = inputs["balances"].to_pylist()
        oo = inputs.get("open_orders")
        self.orders = oo.to_pylist() if oo is not None else []
        self.oo_schema = oo.schema if oo is not None else None
        self.moved = {}                      # (account, asset) -> amount of the last step

    def apply(self, row):
        acc = row["account"]
        if row["action"] == "cancel_order":
            self.orders = [o for o in self.orders
                           if not (o["account"] == acc and o["order_id"] == row["order_id"])]
            return
        p = next(p for p in self.pos if p["account"] == acc and p["symbol"] == row["symbol"])
        trade = row["quantity"]
        asset, amount = realised(p["symbol"], -trade, p.get("entry_price"), self.model)
        p["quantity"] = p["quantity"] + trade
        if row["action"] == "close":
            assert abs(p["quantity"]) <= 1e-12 * abs(trade)
            self.pos.remove(p)
        b = next((b for b in self.bal if b["account"] == acc and b["asset"] == asset), None)
        if b is None:
            b = dict(account=acc, asset=asset, amount=0.0)
            self.bal.append(b)
        self.moved = {(acc, asset): amount}
        b["amount"] += amount

    def tables(self):
        out = dict(self.inputs)
        out["positions"] = pa.Table.from_pylist(self.pos, schema=self.inputs["positions"].schema)
        out["balances"] = pa.Table.from_pylist(self.bal, schema=self.inputs["balances"].schema)
        if self.oo_schema is not None:
            out["open_orders"] = pa.Table.from_pylist(self.orders, schema=self.oo_schema)
        return out

    def margin(self, model=None):
        return pmrisk.margin(**self.tables(), model=self.model if model is None else model)

    def balance(self, acc, asset):
        return sum(b["amount"] for b in self.bal if b["account"] == acc and b["asset"] == asset)


def account_row(result, acc):
    return next(r for r in result.accounts.to_pylist() if r["account"] == acc)


def contributions(result, acc):
    """(symbol, mm_contribution_usd) of the account's positions."""
    return [(r["symbol"], r["mm_contribution_usd"]) for r in result.positions.to_pylist()
            if r["account"] == acc and r["symbol"] != "unallocated"]


def contributors(result, acc):
    """Symbols of the account's positions with a positive MM contribution."""
    return [s for s, c in contributions(result, acc) if c > 0]


def check_plan(inputs, plan, model=None, target=None, check_minimal=True):
    """Every property of SPEC §8 a plan must have, against fresh margin calls."""
    model = pmrisk.Model.coerce(model)
    target = model["liquidation_target"] if target is None else target
    rows = plan.to_pylist()
    start = pmrisk.margin(**inputs, model=model)
    in_liq = {r["account"] for r in start.accounts.to_pylist() if r["status"] == "liquidation"}
    assert {r["account"] for r in rows} <= in_liq
    replay = Replay(inputs, model)
    for acc in sorted({r["account"] for r in rows}):
        steps = [r for r in rows if r["account"] == acc]
        assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
        actions = [r["action"] for r in steps]
        n_cancel = actions.count("cancel_order")
        assert actions[:n_cancel] == ["cancel_order"] * n_cancel      # orders first
        ids = [o["order_id"] for o in (inputs["open_orders"].to_pylist()
                                       if inputs.get("open_orders") is not None else [])
               if o["account"] == acc]
        assert [r["order_id"] for r in steps[:n_cancel]] == sorted(ids)
        for r in steps[n_cancel:]:
            assert r["order_id"] is None and r["action"] in ("reduce", "close")
        for k, r in enumerate(steps):
            before = replay.tables()
            if r["action"] != "cancel_order":
                # the largest positive contributor (USD) of the book as it is, ties by symbol
                ranked = sorted((-c, s) for s, c in contributions(replay.margin(), acc))
                assert ranked and ranked[0][0] < 0 and ranked[0][1] == r["symbol"]
            replay.apply(r)
            fresh = account_row(replay.margin(), acc)
            assert r["margin_ratio_after"] == pytest.approx(fresh["margin_ratio"],
                                                            rel=1e-12, abs=1e-12)
            if r["action"] == "reduce":
                # only the last step, and it reaches the target ...
                assert k == len(steps) - 1
                assert r["margin_ratio_after"] >= target
                if check_minimal:    # ... and 1e-6 (relative) less would not
                    less = Replay(before, model)
                    less.apply(dict(r, quantity=r["quantity"] * (1 - 1e-6)))
                    assert account_row(less.margin(), acc)["margin_ratio"] < target
            if r["action"] == "close" and k < len(steps) - 1:
                assert r["margin_ratio_after"] < target
        last = steps[-1]["margin_ratio_after"]
        # it ends at the target, or with no contributing position left
        assert last >= target or not contributors(replay.margin(), acc)
    return replay


# -- acceptance criteria ------------------------------------------------------------------

def test_demo_account_in_liquidation_cancels_orders_then_reduces_to_target():
    extra = pa.table({"account": [LIQ], "order_id": ["o-0999"], "symbol": ["BTC-28JUN24"],
                      "quantity": [-100.0], "price": [65_000.0]})
    inputs = demo_with_balance(2.2, extra)
    before = pmrisk.margin(**inputs)
    assert account_row(before, LIQ)["status"] == "liquidation"
    plan = liquidation_plan(**inputs)
    assert plan.schema == pa.schema([
        ("account", pa.string()), ("step", pa.int64()), ("action", pa.string()),
        ("symbol", pa.string()), ("order_id", pa.string()), ("quantity", pa.float64()),
        ("margin_ratio_after", pa.float64())])
    rows = plan.to_pylist()
    assert [(r["action"], r["order_id"], r["symbol"]) for r in rows[:2]] == [
        ("cancel_order", "o-0999", "BTC-28JUN24"), ("cancel_order", "o-1002", "BTC-PERPETUAL")]
    # orders only add IM: cancelling them leaves the ratio where it was
    for r in rows[:2]:
        assert r["quantity"] is None
        assert r["margin_ratio_after"] == pytest.approx(account_row(before, LIQ)["margin_ratio"],
                                                        rel=1e-12)
    # the largest contributor (the short 75000 call) is bought back, partly
    assert rows[2]["action"] == "reduce" and rows[2]["symbol"] == "BTC-28JUN24-75000-C"
    assert 0 < rows[2]["quantity"] < 25
    assert rows[-1]["margin_ratio_after"] >= 1.0
    check_plan(inputs, plan)


def test_closes_then_reduces_the_next_contributor_and_a_long_reduction_is_negative():
    """1.5 BTC: closing both short calls is not enough; the long future, a hedge at first,
    is then the largest contributor and is sold down (a negative trade)."""
    inputs = demo_with_balance(1.5)
    plan = liquidation_plan(**inputs)
    rows = plan.to_pylist()
    assert [(r["action"], r["symbol"]) for r in rows] == [
        ("cancel_order", "BTC-PERPETUAL"), ("close", "BTC-28JUN24-75000-C"),
        ("close", "BTC-27SEP24-77000-C"), ("reduce", "BTC-28JUN24")]
    assert rows[1]["quantity"] == 25.0 and rows[2]["quantity"] == 12.0
    assert -20_000 < rows[3]["quantity"] < 0
    check_plan(inputs, plan)


def test_accounts_not_in_liquidation_get_no_rows():
    inputs = demo_with_balance(2.2)
    start = pmrisk.margin(**inputs, model=DM).accounts.to_pylist()
    assert sum(r["status"] == "liquidation" for r in start) == 1
    assert set(liquidation_plan(**inputs, model=DM)["account"].to_pylist()) == {LIQ}
    # the demo as shipped: the worst account is in margin call, not liquidation
    plain = dict(DEMO)
    plain.pop("valuation_time")
    empty = liquidation_plan(**plain, valuation_time=TIME, model=DM)
    assert empty.num_rows == 0 and empty.schema.names[-1] == "margin_ratio_after"
    # `accounts` restricts which accounts are considered, never adds one
    assert liquidation_plan(**inputs, model=DM, accounts=["directional"]).num_rows == 0
    assert liquidation_plan(**inputs, model=DM, accounts=[LIQ, "long-vol"]).equals(
        liquidation_plan(**inputs, model=DM))


def _short_option_usdt_book(ratio=0.6, qty=-10.0):
    """A short ATM call and a USDT balance tuned so the margin ratio is ``ratio``."""
    sym = "BTC-28JUN24-65000-C"
    probe = pmrisk.margin(**book([("a", sym, qty)], [("a", "USDT", 1e9)]))
    acc = account_row(probe, "a")
    value_usd = acc["equity"] - 1e9
    usdt = ratio * acc["maintenance_margin"] - value_usd
    return book([("a", sym, qty)], [("a", "USDT", usdt)])


def test_engineered_short_option_book_below_the_liquidation_level_gets_a_plan():
    model = pmrisk.Model.preset("deribit_pme")
    assert model["thresholds"]["liquidation"] == 0.75
    inputs = _short_option_usdt_book(0.6)
    acc = account_row(pmrisk.margin(**inputs), "a")
    assert acc["margin_ratio"] == pytest.approx(0.6) and acc["status"] == "liquidation"
    plan = liquidation_plan(**inputs)
    assert plan["action"].to_pylist() == ["reduce"]
    assert 0 < plan["quantity"][0].as_py() < 10
    replay = check_plan(inputs, plan)
    # the buy-back is paid in BTC: with only USDT on the account it becomes a BTC loan
    assert replay.balance("a", "BTC") < 0


def test_when_even_closing_everything_misses_the_target_every_contributor_is_closed():
    inputs = demo_with_balance(0.5)
    plan = liquidation_plan(**inputs)
    rows = plan.to_pylist()
    assert [r["action"] for r in rows] == ["cancel_order", "close", "close", "close"]
    assert rows[-1]["margin_ratio_after"] < 1.0
    replay = check_plan(inputs, plan)
    left = [p for p in replay.pos if p["account"] == LIQ]
    assert left == []                          # nothing contributes; here nothing is left


def test_a_hedge_is_not_reduced_while_it_hedges():
    """Short puts hedged by a short future: the future's contribution is negative, so only the
    puts are bought back (by 1.5 BTC the future would be next, once the puts are gone)."""
    inputs = book([("a", "BTC-28JUN24-65000-P", -20.0), ("a", "BTC-28JUN24", -50_000.0)],
                  [("a", "BTC", 1.7)])
    start = pmrisk.margin(**inputs)
    assert account_row(start, "a")["status"] == "liquidation"
    assert contributors(start, "a") == ["BTC-28JUN24-65000-P"]
    plan = liquidation_plan(**inputs)
    assert plan.select(["action", "symbol"]).to_pylist() == [
        {"action": "reduce", "symbol": "BTC-28JUN24-65000-P"}]
    check_plan(inputs, plan)


def test_a_partial_reduction_is_found_when_closing_would_miss_the_target():
    """On 1.5 BTC the same book's ratio is not monotone in the puts bought back: about 5 of
    them restore the target, all 20 overshoot into the future's (short) risk and miss it.
    The plan buys back the few, rather than closing the puts and then the future."""
    inputs = book([("a", "BTC-28JUN24-65000-P", -20.0), ("a", "BTC-28JUN24", -50_000.0)],
                  [("a", "BTC", 1.5)])
    closed = Replay(inputs)
    closed.apply({"account": "a", "action": "close", "symbol": "BTC-28JUN24-65000-P",
                  "quantity": 20.0})
    assert account_row(closed.margin(), "a")["margin_ratio"] < 1.0
    plan = liquidation_plan(**inputs)
    assert plan.select(["action", "symbol"]).to_pylist() == [
        {"action": "reduce", "symbol": "BTC-28JUN24-65000-P"}]
    assert 0 < plan["quantity"][0].as_py() < 10
    check_plan(inputs, plan)
    # the same with lots: the smallest whole number of lots, found inside the interval
    lots = liquidation_plan(**inputs, lot_sizes={"BTC-28JUN24-65000-P": 0.1})
    q = lots["quantity"][0].as_py()
    assert lots["action"][0].as_py() == "reduce"
    assert q == pytest.approx(math.ceil(plan["quantity"][0].as_py() / 0.1) * 0.1, rel=1e-12)


@pytest.mark.parametrize("positions", [
    [("a", "BTC-PERPETUAL", 400_000.0, 61_500.0)],          # inverse, gain -> BTC
    [("a", "BTC-PERPETUAL", -400_000.0, 61_500.0)],         # inverse, loss -> BTC
    [("a", "BTC-PERPETUAL", 400_000.0)],                    # no entry: nothing moves
    [("a", "BTC_USDC-PERPETUAL", 6_000.0, 63_000.0)],       # linear -> USDC
    [("a", "BTC-28JUN24-65000-C", -15.0)],                  # inverse option -> BTC
    [("a", "BTC_USDC-28JUN24-70000-C", -1_500.0)],          # linear option -> USDC
    [("a", "BTC_USDC", 6.0)],                               # spot -> USDC
], ids=["inv-perp-gain", "inv-perp-loss", "no-entry", "linear-perp", "inv-option",
        "linear-option", "spot"])
@pytest.mark.parametrize("rate", [1.0, 0.9])
def test_equity_is_preserved_at_the_mark_modulo_the_collateral_haircut(positions, rate):
    model = pmrisk.Model.preset("deribit_pme").with_overrides(
        {"collateral": {"BTC": {"rate": rate}, "USDC": {"rate": rate}}})
    # size the balance so the account sits at ratio ~0.5
    probe = pmrisk.margin(**book(positions, [("a", "USDT", 1e9)]), model=model)
    acc = account_row(probe, "a")
    usdt = 0.5 * acc["maintenance_margin"] - (acc["equity"] - 1e9)
    bals = [("a", "USDT", usdt), ("a", "BTC", 0.5), ("a", "USDC", 30_000.0)]
    bals[0] = ("a", "USDT", usdt - 0.5 * 65_000 * rate - 30_000 * rate)
    inputs = book(positions, bals)
    start = account_row(pmrisk.margin(**inputs, model=model), "a")
    assert start["status"] == "liquidation"
    plan = liquidation_plan(**inputs, model=model)
    assert plan.num_rows >= 1
    replay = Replay(inputs, model)
    px = {"BTC": 65_000.0, "USDC": 1.0, "USDT": 1.0}
    coll = lambda x: rate * x if x > 0 else x                   # noqa: E731
    prev = start
    for r in plan.to_pylist():
        old = {k: replay.balance("a", k[1]) for k in [("a", "BTC"), ("a", "USDC")]}
        replay.apply(r)
        (key, moved), = replay.moved.items()
        now = account_row(replay.margin(), "a")
        # actual equity (no collateral rates) is unchanged by a trade at the mark
        assert now["actual_equity"] == pytest.approx(prev["actual_equity"], rel=1e-12)
        # equity moves by exactly what the collateral rate does to the realised amount
        new_bal = old[key] + moved
        haircut = (coll(new_bal) - coll(old[key]) - moved) * px[key[1]]
        assert now["equity"] == pytest.approx(prev["equity"] + haircut, rel=1e-12, abs=1e-6)
        if rate == 1.0:
            assert now["equity"] == pytest.approx(prev["equity"], rel=1e-12)
        prev = now
    check_plan(inputs, plan, model=model)


# -- options and details --------------------------------------------------------------------

def test_target_defaults_to_the_model_and_can_be_raised():
    inputs = _short_option_usdt_book(0.6)
    one = liquidation_plan(**inputs, model=DM)
    model = pmrisk.Model.preset("deribit_pme").with_overrides({"liquidation_target": 1.3})
    higher = liquidation_plan(**inputs, model=model)
    assert higher["margin_ratio_after"][0].as_py() >= 1.3
    assert higher["quantity"][0].as_py() > one["quantity"][0].as_py()
    assert liquidation_plan(**inputs, model=DM, target=1.3).equals(higher)
    check_plan(inputs, higher, model=model)


def test_lot_sizes_round_reductions_up_to_whole_lots():
    inputs = _short_option_usdt_book(0.6, qty=-10.05)
    plan = liquidation_plan(**inputs, lot_sizes={"BTC-28JUN24-65000-C": 0.5})
    q = plan["quantity"][0].as_py()
    assert plan["action"][0].as_py() == "reduce"
    assert q / 0.5 == round(q / 0.5)
    continuous = liquidation_plan(**inputs)["quantity"][0].as_py()
    assert q - 0.5 < continuous <= q
    # one lot less misses the target
    replay = Replay(inputs)
    replay.apply(dict(plan.to_pylist()[0], quantity=q - 0.5))
    assert account_row(replay.margin(), "a")["margin_ratio"] < 1.0
    check_plan(inputs, plan, check_minimal=False)
    # a lot larger than the position: the whole position
    whole = liquidation_plan(**inputs, lot_sizes={"BTC-28JUN24-65000-C": 100.0})
    assert whole.select(["action", "quantity"]).to_pylist() == [
        {"action": "close", "quantity": 10.05}]


def test_ties_go_to_the_first_symbol():
    """Two identical short calls (twin instruments): the lower symbol is bought back first."""
    neg = EXTRA_INSTR.slice(0, 0)
    twin_i = DEMO["instruments"].filter(pa.compute.equal(DEMO["instruments"]["symbol"],
                                                         "BTC-28JUN24-65000-C"))
    twin_m = DEMO["market"].filter(pa.compute.equal(DEMO["market"]["symbol"],
                                                    "BTC-28JUN24-65000-C"))
    twin_i = twin_i.set_column(0, "symbol", pa.array(["AAA-TWIN"]))
    twin_m = twin_m.set_column(0, "symbol", pa.array(["AAA-TWIN"]))
    inputs = book([("a", "BTC-28JUN24-65000-C", -10.0), ("a", "AAA-TWIN", -10.0)],
                  [("a", "BTC", 0.3)],
                  instruments=pa.concat_tables([INSTRUMENTS, twin_i, neg]),
                  market=pa.concat_tables([MARKET, twin_m]))
    assert account_row(pmrisk.margin(**inputs), "a")["status"] == "liquidation"
    plan = liquidation_plan(**inputs)
    assert plan["symbol"][0].as_py() == "AAA-TWIN"


def test_integer_order_ids_are_cancelled_in_numeric_order_and_keep_their_type():
    oo = pa.table({"account": ["a", "a", "b"], "order_id": pa.array([10, 9, 1], pa.int64()),
                   "symbol": ["BTC-PERPETUAL"] * 3, "quantity": [10.0, -10.0, 10.0],
                   "price": [65_000.0] * 3})
    inputs = _short_option_usdt_book(0.6)
    inputs["open_orders"] = oo
    inputs["balances"] = pa.concat_tables([inputs["balances"], pa.table(
        {"account": ["b"], "asset": ["USDT"], "amount": [1.0]}, schema=BAL_SCHEMA)])
    plan = liquidation_plan(**inputs)
    assert plan.schema.field("order_id").type == pa.int64()
    assert plan["order_id"].to_pylist()[:2] == [9, 10]
    assert set(plan["account"].to_pylist()) == {"a"}
    check_plan(inputs, plan)


def test_foreign_arrow_inputs_and_dictionary_order_ids():
    """polars frames (string_view columns) and dictionary-encoded ids plan like plain tables;
    string-like order ids come back as ``string``."""
    pl = pytest.importorskip("polars")
    inputs = _short_option_usdt_book(0.6)
    oo = pa.table({"account": ["a", "a"], "order_id": pa.array(["x2", "x1"]).dictionary_encode(),
                   "symbol": ["BTC-PERPETUAL"] * 2, "quantity": [10.0, -10.0],
                   "price": [65_000.0] * 2})
    want = liquidation_plan(**dict(inputs, open_orders=oo.cast(pa.schema([
        ("account", pa.string()), ("order_id", pa.string()), ("symbol", pa.string()),
        ("quantity", pa.float64()), ("price", pa.float64())]))))
    assert want["order_id"].to_pylist()[:2] == ["x1", "x2"]
    assert liquidation_plan(**dict(inputs, open_orders=oo)).equals(want)
    foreign = {k: pl.from_arrow(v) if isinstance(v, pa.Table) else v for k, v in
               dict(inputs, open_orders=oo).items()}
    assert liquidation_plan(**foreign, accounts="a").equals(want)


def test_one_snapshot_only_and_bad_arguments_are_margin_errors():
    inputs = _short_option_usdt_book(0.6)
    timed = dict(inputs)
    timed.pop("valuation_time")
    timed["positions"] = inputs["positions"].append_column(
        "time", pa.array([0], pa.timestamp("ns", tz="UTC")))
    with pytest.raises(pmrisk.MarginError, match=r"positions\.time.*one snapshot"):
        liquidation_plan(**timed)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1.0"):
        with pytest.raises(pmrisk.MarginError, match="target"):
            liquidation_plan(**inputs, target=bad)
    with pytest.raises(pmrisk.MarginError, match="nobody"):
        liquidation_plan(**inputs, accounts=["nobody"])
    with pytest.raises(pmrisk.MarginError, match="lot_sizes"):
        liquidation_plan(**inputs, lot_sizes={"BTC-28JUN24-65000-C": 0.0})
    with pytest.raises(pmrisk.MarginError, match="positions.quantity"):
        liquidation_plan(**dict(inputs, positions=inputs["positions"].set_column(
            2, "quantity", pa.array([float("nan")]))))


@settings(max_examples=4)
@given(pos=books(max_accounts=1, max_positions=5))
def test_random_books_pushed_into_liquidation(pos):
    """Random demo-universe books on a USDC balance tuned to a 0.5 ratio: whatever the plan
    does, it has every property above."""
    rows = [(r["account"], r["symbol"], r["quantity"]) for r in pos.to_pylist()]
    probe = pmrisk.margin(**book(rows, [("acct-0", "USDC", 1e9)]))
    acc = account_row(probe, "acct-0")
    assume(acc["maintenance_margin"] > 0)
    usdc = 0.5 * acc["maintenance_margin"] - (acc["equity"] - 1e9)
    assume(usdc > 0)
    inputs = book(rows, [("acct-0", "USDC", usdc)])
    assert account_row(pmrisk.margin(**inputs), "acct-0")["status"] == "liquidation"
    plan = liquidation_plan(**inputs)
    assert plan.num_rows >= 1
    assert np.isfinite(plan["margin_ratio_after"].to_numpy()).all() or \
        math.isinf(plan["margin_ratio_after"][-1].as_py())
    check_plan(inputs, plan)
