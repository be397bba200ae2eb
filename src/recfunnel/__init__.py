"""recfunnel: a recommender-system engine."""

__version__ = "0.1.0"
