"""Experiment results and the merchant insights page (issue #18): a placeholder, filled next."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
