"""API gateway and agents worker."""
