"""Pieces every segstream process shares: settings, broker clients, metrics."""
