"""Fault matrix: each hostile or careless input of issue #20 and what the pipeline does with it."""
