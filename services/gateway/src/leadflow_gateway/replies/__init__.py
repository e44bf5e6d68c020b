"""Inbound replies and call dispositions that may revoke consent (FCC 24-18)."""
