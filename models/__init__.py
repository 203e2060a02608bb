"""Demo models built on tinygrad_attn."""
