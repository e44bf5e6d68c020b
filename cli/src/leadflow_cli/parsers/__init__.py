"""argparse definitions of each command group, importing nothing heavy."""
