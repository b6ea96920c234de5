"""The dashboard router, its feed and its static page."""
