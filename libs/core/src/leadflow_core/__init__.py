"""leadflow_core."""
