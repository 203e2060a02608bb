"""German<->English (and French) Transformer translator on Multi30k."""
