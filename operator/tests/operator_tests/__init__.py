"""Operator tests, a package of their own.

Without it pytest would name them `operator.tests.*` and shadow the stdlib `operator` module.
"""
