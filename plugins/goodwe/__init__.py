"""Goodwe SEMS-portal proxy plugin for gridtap (see README.md)."""
