"""Monitoring: drift detection on what a deployed recommender sees and does.

``monitoring.drift`` holds the streaming detectors (one per file, behind ``make_detector``).
"""
