"""leadflow_operator: reconciles `Tenant` resources into compliance (kopf)."""
