"""Local HTTP servers speaking third-party vendors documented wire formats."""
