"""The margin arithmetic on validated arrays: revaluation, risk units, add-ons, MM/IM,
account figures; and the calls built on it (margin, risk arrays, snapshots, liquidation plans)."""
