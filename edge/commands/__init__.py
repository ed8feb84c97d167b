"""Small `edge` subcommands, one module each."""
