"""The HTML statement: one team, one period, one self-contained page (``chargeback statement``).

The numbers come from data.py (built on the report); charts.py draws inline SVG
and page.py the page. The console reuses the charts. These names are the
package's public surface.
"""

from __future__ import annotations

from .charts import Bar, Day, bar_chart, colors_for, daily_chart, legend
from .data import RawFacts, Statement, attach_raw_facts, build_statement, read_raw_facts
from .page import money, render_page

__all__ = ["Bar", "Day", "RawFacts", "Statement", "attach_raw_facts", "bar_chart", "build_statement", "colors_for", "daily_chart", "legend",
           "money", "read_raw_facts", "render_page"]
