"""Alembic migrations, shipped inside the package (not a top-level migrations/ folder as
DESIGN sketches) so `twinlens db upgrade` works from an installed wheel."""
