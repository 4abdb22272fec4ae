"""Budget enforcement in the plugin: state pushed by the aggregators, checked in access from memory.

``gate_for(config)`` gives a plugin instance its gate (None when the route does
not enforce budgets: then nothing here runs); ``annotate`` marks the event of a
request the gate refused. See gate.py for the PDK cost and the rules.
"""

from __future__ import annotations

from ..config import PluginConfig
from .gate import BUDGET_KEY, BudgetGate, Verdict, annotate
from .state import BudgetSnapshot
from .watcher import BudgetWatcher, watcher_for

__all__ = ["BUDGET_KEY", "BudgetGate", "BudgetSnapshot", "BudgetWatcher", "Verdict", "annotate", "gate_for"]


def gate_for(config: PluginConfig) -> BudgetGate | None:
    return BudgetGate(config, watcher_for(config.sender)) if config.budget_enforcement else None
