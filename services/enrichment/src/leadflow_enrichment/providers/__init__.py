"""Outside systems behind small interfaces: scorer (AI), CRM, dialer. Local defaults are real code."""
