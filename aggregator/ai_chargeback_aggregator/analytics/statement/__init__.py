"""The HTML statement: one team, one period, one self-contained page (``chargeback statement``).

The numbers come from aggregator/reports/statement.py (built on the report);
this package only draws them: charts.py (inline SVG) and page.py (the page).
"""
