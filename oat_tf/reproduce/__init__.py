"""Reproduction of the paper's claims: the plan per budget, a resumable runner and the report."""
