"""Observers of a Router's media that do not forward it: audio levels, the active speaker."""
