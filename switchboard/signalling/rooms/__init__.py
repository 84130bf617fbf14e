"""Rooms created through the rooms API (ACS Rooms, api-version 2025-03-13): who may join, in
which role, and when. ``service.py`` is the logic, ``routes.py`` the HTTP API."""
