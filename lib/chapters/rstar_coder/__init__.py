"""Competitive-programming problem templates, input generation and mutual verification (rStar-Coder chapter)."""
