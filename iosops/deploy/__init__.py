"""Blue-green deploys of the compose stack behind nginx (local or SSH hosts); see bluegreen.py."""
