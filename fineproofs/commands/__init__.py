"""Click commands registered by the main CLI group."""
