from imgress.cli.main import cli

cli()
