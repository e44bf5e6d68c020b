"""leadflow_cli."""
