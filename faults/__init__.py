"""The fault suite (`make faults`): the whole mesh under steady load on its own PostgreSQL and
Redis, one fault at a time, each scenario reported with what reached the vendors' fakes."""
