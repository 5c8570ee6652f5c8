"""The Redis backend: one Redis (or Sentinel) shared by every instance."""
