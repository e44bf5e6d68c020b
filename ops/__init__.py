"""Operations tooling that lives beside the code: Grafana dashboards generated from code."""
