"""One module per scenario of issue 5; each has `run(settings) -> Result`."""
