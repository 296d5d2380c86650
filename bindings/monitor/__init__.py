"""pmrisk.Monitor: many accounts' margin kept current as ticks and account changes arrive
(blocks of accounts, account and market state, threshold alerts)."""
