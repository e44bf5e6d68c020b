"""leadflow_gateway."""
