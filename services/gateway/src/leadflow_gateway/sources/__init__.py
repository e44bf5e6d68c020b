"""One module per lead source: verify the sender, parse its wire format, map it to a Lead."""
