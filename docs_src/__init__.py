"""Code of the docs pages, included into them with `--8<--` and run by
tests/package/test_docs_src.py; and `config_reference`, which generates the tables of
docs/configuration.md."""
