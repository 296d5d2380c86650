"""The command line (``pmrisk demo | margin | samples | backtest | calibrate | monitor``)
and its terminal views."""
