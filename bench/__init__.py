"""Benchmarks: eventcore side by side with the ``eventsourcing`` library and the raw driver.

Run ``python bench/run.py --help``.
"""
