"""Test support: the lab registry helpers, the invented vulnerability DB, shared helpers."""
