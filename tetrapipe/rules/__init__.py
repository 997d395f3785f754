"""The category library and its compiler: conditions, field paths, generated matchers, summary
templates, the docs page, and the TracingPolicies that produce the events.
"""
