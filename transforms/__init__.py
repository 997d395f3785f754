"""Pure, synchronous transforms compiled once at load: `tag` (categories) and `classify` (CIDR zones)."""
