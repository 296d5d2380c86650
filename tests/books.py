"""Hypothesis strategies for books over a fixed instrument universe (the demo book's
instruments: BTC and ETH; inverse and linear perpetuals, dated futures, calls and puts)."""

import numpy as np
import pyarrow as pa
from hypothesis import strategies as st

from pmrisk import samples

DEMO = samples.demo_book()
UNIVERSE = DEMO["instruments"]
MARKET = DEMO["market"]
INDEX = DEMO["index"]
TIME = DEMO["valuation_time"]
SYMBOLS = UNIVERSE["symbol"].to_pylist()
KINDS = UNIVERSE["kind"].to_pylist()


def _qty(kind):
    if kind == "option":
        return st.floats(-50, 50, allow_nan=False).filter(lambda x: abs(x) > 1e-3)
    return st.floats(-1e5, 1e5, allow_nan=False).filter(lambda x: abs(x) > 1e-3)


@st.composite
def books(draw, max_accounts=3, max_positions=12):
    """A positions table: 1..max_accounts accounts, distinct symbols per account."""
    n_acc = draw(st.integers(1, max_accounts))
    rows = []
    for a in range(n_acc):
        idx = draw(st.lists(st.integers(0, len(SYMBOLS) - 1), min_size=1,
                            max_size=max_positions, unique=True))
        for i in idx:
            rows.append({"account": f"acct-{a}", "symbol": SYMBOLS[i],
                         "quantity": draw(_qty(KINDS[i]))})
    return pa.Table.from_pylist(rows)


def with_negated_instruments():
    """The universe plus a '-NEG' twin of every instrument (same terms, same marks), so a
    book and its exact negation can sit in one account."""
    neg_ins = UNIVERSE.set_column(0, "symbol", pa.array([s + "-NEG" for s in SYMBOLS]))
    neg_mkt = MARKET.set_column(0, "symbol", pa.array([s + "-NEG" for s in
                                                       MARKET["symbol"].to_pylist()]))
    return pa.concat_tables([UNIVERSE, neg_ins]), pa.concat_tables([MARKET, neg_mkt])


def scaled(table, k):
    q = np.asarray(table["quantity"].to_numpy()) * k
    return table.set_column(table.column_names.index("quantity"), "quantity", pa.array(q))


def assert_no_nan(result):
    """No NaN and no null in any float column of the accounts, units and positions tables,
    but one documented case: the units' ``scenario_price_shock`` is null where the unit takes
    no part in its account's binding scenario (under ``cross_unit = "sum"`` a unit without a
    loss; under ``"correlated"`` also the other units when one unit's tail binds), and such a
    unit's ``scenario_margin`` is 0."""
    for t in (result.accounts, result.units, result.positions):
        for name in t.column_names:
            c = t.column(name)
            if not pa.types.is_floating(c.type):
                continue
            if name == "scenario_price_shock":
                null = c.is_null().to_numpy(zero_copy_only=False)
                share = t.column("scenario_margin").to_numpy(zero_copy_only=False)
                assert (share[null] == 0).all(), name
                c = c.drop_null()
            else:
                assert c.null_count == 0, name
            assert not np.isnan(c.to_numpy(zero_copy_only=False)).any(), name

