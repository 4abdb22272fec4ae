"""Showback and chargeback reports, drill-down handles and the FOCUS export."""
