"""A small app and its test suite: `pytest examples/testing_app`."""
