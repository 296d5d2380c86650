"""pmrisk: offline portfolio margin for derivatives books, Arrow in and out.

>>> import pmrisk
>>> pmrisk.Model.preset("span")["scenario_set"]
'span16'
"""

from .backtest.run import BacktestOutput, backtest
from .model.calibration import CalibrationSchedule, calibrate, exceedances
from .model.correlation import CorrelationMatrix, CorrelationRepaired, correlation_matrix
from .venues.eligibility import eligibility
from .errors import MarginError, MarginWarning
from .engine.liquidation import liquidation_plan
from .engine.margin import margin
from .model.model import Model
from .monitor.monitor import Monitor, MonitorUpdate
from .results import MarginResult
from .engine.risk_arrays import margin_from_risk_arrays
from .warmup import warmup

__version__ = "0.1.0"
__all__ = ["margin", "margin_from_risk_arrays", "Model", "MarginError", "MarginWarning",
           "MarginResult",
           "eligibility", "liquidation_plan", "correlation_matrix", "CorrelationMatrix",
           "CorrelationRepaired", "warmup", "backtest", "BacktestOutput", "Monitor",
           "MonitorUpdate", "calibrate", "exceedances", "CalibrationSchedule", "__version__"]
