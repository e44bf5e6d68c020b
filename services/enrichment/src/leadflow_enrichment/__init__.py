"""leadflow_enrichment."""
