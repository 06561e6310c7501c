"""Evaluators of a learned representation: small modules, one protocol each."""
