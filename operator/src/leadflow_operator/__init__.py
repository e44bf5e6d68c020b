"""leadflow_operator."""
