"""Renderers: turn an engine's or the planner's result into rich tables and JSON-ready dicts. No arithmetic here.

One module per command family (``plan``, ``memory``, ``step``...); ``common`` holds the shared pieces (assumption
tables, model lines) and the FLOPs, GPU and preset renderers. The package imports nothing: each command imports the
module it renders with.
"""
