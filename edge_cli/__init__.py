"""The `edge` command line: the composition of every package's subcommands (`edge_cli.main`).
It sits above all packages, so the runtime (`edge`) never imports the workstation side."""
