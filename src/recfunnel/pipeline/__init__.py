"""Composition of stages: experiments now; the serving funnel later."""
