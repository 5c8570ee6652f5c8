"""The service's storage: the ownership record, usage and tenants' webhooks, on SQLite or Redis."""
