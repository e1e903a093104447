"""Transports: turn wire requests into core calls and core results/errors into wire replies."""
