"""Configuration at the edge: typed settings whose options are declared once (settings.py: the
command-line flag, the TOML key and secret redaction at once) and the parsers of their values, each
failing in one line that says what was expected (values.py). Nothing below the commands reads argparse."""
