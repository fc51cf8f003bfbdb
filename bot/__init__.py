"""citebot's two doors onto the Answerer: the command line and the Discord bot."""
