"""leadflow_compliance."""
