"""The subcommands of `arrcoc-rt` that are not a subpackage's own (evaluation/, learning/,
experiment/, distributed/ and serve/ have theirs): cli.py parses the command line and routes here."""
