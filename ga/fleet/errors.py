"""Errors a caller of the HTTP map may catch."""

from __future__ import annotations


class EvaluationError(RuntimeError):
    """An evaluator refused a request (4xx), or a chunk failed on too many attempts."""


class NoEvaluatorAvailable(EvaluationError):
    """No evaluator could be reached for the configured deadline."""
