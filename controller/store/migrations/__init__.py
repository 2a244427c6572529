"""Alembic migration environment for youxu's database (shipped with the package)."""
