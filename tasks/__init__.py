"""Thin Prefect tasks: one unit of work each, its inputs and outputs, retries and where results go."""
