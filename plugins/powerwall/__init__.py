"""Tesla Powerwall plugin (see README.md)."""
