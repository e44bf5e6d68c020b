"""leadflow_dispatcher."""
