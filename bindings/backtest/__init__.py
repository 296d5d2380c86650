"""pmrisk.backtest: margin every (time, account) snapshot of a history too long for one call
(Parquet datasets in batches, calibration schedules, Dask)."""
